import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseGoDuration } from '../../src/api/index.ts';

// Expected values are what Go's time.ParseDuration returns, in milliseconds.
const accepted: readonly (readonly [string, number])[] = [
  ['0', 0],
  ['+0', 0],
  ['-0', 0],
  ['0s', 0],
  ['5s', 5000],
  ['30s', 30_000],
  ['+5s', 5000],
  ['1m', 60_000],
  ['1h', 3_600_000],
  ['1h30m', 5_400_000],
  ['2h45m30.5s', 9_930_500],
  ['1.5h', 5_400_000],
  ['1.5s', 1500],
  ['.5s', 500],
  ['1.s', 1000],
  ['100ms', 100],
  ['1ms', 1],
  ['1us', 0.001],
  ['1\u00b5s', 0.001],
  ['1\u03bcs', 0.001],
  ['1ns', 0.000001],
  // Go truncates sub-nanosecond fractions.
  ['1.9ns', 0.000001],
  ['1.0000000001s', 1000],
  ['0.000000001s', 0.000001],
  ['1s500ms', 1500],
  ['1m1m', 120_000],
  // The largest duration Go can hold: 2^63-1 ns.
  ['2562047h47m16.854775807s', 9_223_372_036_854.775807],
  ['9223372036854775807ns', 9_223_372_036_854.775807],
];

for (const [input, ms] of accepted) {
  test(`parseGoDuration(${JSON.stringify(input)}) = ${ms}ms`, () => {
    assert.equal(parseGoDuration(input), ms);
  });
}

const refused: readonly (readonly [string, RegExp])[] = [
  ['', /invalid duration ""/],
  ['-', /invalid duration/],
  ['+', /invalid duration/],
  ['s', /invalid duration/],
  ['.s', /invalid duration/],
  ['.', /invalid duration/],
  ['5', /missing unit/],
  ['00', /missing unit/],
  ['1.5', /missing unit/],
  ['1s2', /missing unit/],
  ['5 minutes', /unknown unit " minutes"/],
  ['1d', /unknown unit "d"/],
  ['1S', /unknown unit "S"/],
  ['1sm', /unknown unit "sm"/],
  ['1h-1m', /unknown unit "h-"/],
  ['\u00b5s', /invalid duration/],
  ['-1s', /negative duration "-1s" is not allowed/],
  ['-1.5h', /negative duration/],
  // One past the int64 limit, by digits, by units and by sum.
  ['9223372036854775808ns', /invalid duration/],
  ['2562047h47m16.854775808s', /invalid duration/],
  ['9999999999999h', /invalid duration/],
  ['99999999999999999999s', /invalid duration/],
];

for (const [input, message] of refused) {
  test(`parseGoDuration(${JSON.stringify(input)}) throws`, () => {
    assert.throws(() => parseGoDuration(input), (error: unknown) => error instanceof RangeError && message.test(error.message));
  });
}
