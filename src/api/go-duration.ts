// Go's time.ParseDuration, ported line for line so that a string the CRD's
// CEL `duration()` accepts means the same number of nanoseconds here. Go
// works on unsigned 64-bit integers and truncates fractions through float64;
// BigInt and Number reproduce both, including the overflow points.

const NANOS_PER_UNIT: ReadonlyMap<string, bigint> = new Map([
  ['ns', 1n],
  ['us', 1_000n],
  ['\u00b5s', 1_000n], // micro sign
  ['\u03bcs', 1_000n], // Greek small letter mu
  ['ms', 1_000_000n],
  ['s', 1_000_000_000n],
  ['m', 60_000_000_000n],
  ['h', 3_600_000_000_000n],
]);

const TWO_63 = 1n << 63n;

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= '0' && c <= '9';
}

function invalid(orig: string): RangeError {
  return new RangeError(`time: invalid duration ${JSON.stringify(orig)}`);
}

/**
 * Parses a Go duration string ("30s", "1h30m", "1.5m", "250µs", "0") into
 * milliseconds (fractional below 1ms). Follows Go's grammar exactly, signs
 * included, but a negative result is refused: no Rowcast setting has a use
 * for one. Throws RangeError with Go's message on anything Go would refuse.
 */
export function parseGoDuration(input: string): number {
  let s = input;
  let neg = false;
  const first = s[0];
  if (first === '-' || first === '+') {
    neg = first === '-';
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') throw invalid(input);

  let total = 0n;
  while (s !== '') {
    if (!(s[0] === '.' || isDigit(s[0]))) throw invalid(input);

    let i = 0;
    let whole = 0n;
    for (; isDigit(s[i]); i++) {
      if (whole > TWO_63 / 10n) throw invalid(input);
      whole = whole * 10n + BigInt(Number(s[i]));
      if (whole > TWO_63) throw invalid(input);
    }
    const pre = i > 0;
    s = s.slice(i);

    let fraction = 0n;
    let scale = 1;
    let post = false;
    if (s[0] === '.') {
      s = s.slice(1);
      let overflow = false;
      i = 0;
      for (; isDigit(s[i]); i++) {
        // Past 2^63 Go stops gathering precision rather than failing.
        if (overflow) continue;
        if (fraction > (TWO_63 - 1n) / 10n) {
          overflow = true;
          continue;
        }
        const next = fraction * 10n + BigInt(Number(s[i]));
        if (next > TWO_63) {
          overflow = true;
          continue;
        }
        fraction = next;
        scale *= 10;
      }
      post = i > 0;
      s = s.slice(i);
    }
    if (!pre && !post) throw invalid(input);

    i = 0;
    while (i < s.length && s[i] !== '.' && !isDigit(s[i])) i++;
    if (i === 0) throw new RangeError(`time: missing unit in duration ${JSON.stringify(input)}`);
    const unitName = s.slice(0, i);
    s = s.slice(i);
    const unit = NANOS_PER_UNIT.get(unitName);
    if (unit === undefined) {
      throw new RangeError(`time: unknown unit ${JSON.stringify(unitName)} in duration ${JSON.stringify(input)}`);
    }
    if (whole > TWO_63 / unit) throw invalid(input);
    let v = whole * unit;
    if (fraction > 0n) {
      v += BigInt(Math.trunc(Number(fraction) * (Number(unit) / scale)));
      if (v > TWO_63) throw invalid(input);
    }
    total += v;
    if (total > TWO_63) throw invalid(input);
  }
  if (neg) {
    if (total === 0n) return 0;
    throw new RangeError(`negative duration ${JSON.stringify(input)} is not allowed`);
  }
  if (total > TWO_63 - 1n) throw invalid(input);
  return Number(total) / 1e6;
}
