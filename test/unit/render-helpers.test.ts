import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { load } from 'js-yaml';
import { HELPER_NAMES, compileTemplate, renderTemplate, type RenderContext } from '../../src/render/index.ts';

const NOW = new Date('2024-05-06T07:08:09.123Z');

function context(row: Record<string, unknown>): RenderContext {
  return {
    row,
    metadata: { name: 'users', namespace: 'team-a', labels: {}, annotations: {} },
    cluster: { name: 'eu-1', labels: { region: 'eu' } },
  };
}

/** The template's text for one row; fails the test when rendering fails. */
function render(source: string, row: Record<string, unknown> = {}): string {
  const result = renderTemplate(compileTemplate(source), context(row), { rowKey: 'k', now: () => NOW });
  if (!result.ok) assert.fail(`${result.failure.field}: ${result.failure.message}`);
  return result.text;
}

/** The failure message of a template that must fail for this row. */
function failure(source: string, row: Record<string, unknown> = {}): string {
  const result = renderTemplate(compileTemplate(source), context(row), { rowKey: 'k', now: () => NOW });
  if (result.ok) assert.fail('expected the render to fail');
  return result.failure.message;
}

const AWKWARD = 'acme & co"\n: x';

describe('string helpers', () => {
  test('lower, upper, trim', () => {
    assert.equal(render('{{lower row.v}}', { v: 'MiXeD Ä' }), 'mixed ä');
    assert.equal(render('{{upper row.v}}', { v: 'MiXeD ä' }), 'MIXED Ä');
    assert.equal(render('[{{trim row.v}}]', { v: ' \t spaced \n' }), '[spaced]');
  });

  test('numbers and booleans are text to them; NULL is empty', () => {
    assert.equal(render('{{upper row.n}}|{{lower row.b}}|{{trim row.z}}', { n: 42, b: true, z: null }), '42|true|');
  });

  test('a list or mapping is refused with the helper named', () => {
    assert.match(failure('{{lower row.v}}', { v: ['a'] }), /lower: expected text but got an array/);
    assert.match(failure('{{upper row.v}}', { v: { a: 1 } }), /upper: expected text but got an object/);
  });

  test('default replaces NULL and empty text, not 0 or false', () => {
    assert.equal(
      render('{{default row.a "x"}}|{{default row.b "x"}}|{{default row.c "x"}}|{{default row.d "x"}}|{{default row.e "x"}}', {
        a: null,
        b: '',
        c: 0,
        d: false,
        e: 'kept',
      }),
      'x|x|0|false|kept',
    );
  });

  test('default does not excuse a missing field', () => {
    assert.match(failure('{{default row.missing "x"}}', {}), /"row\.missing" is not defined/);
  });
});

describe('quoting helpers', () => {
  test('quote writes a JSON string that YAML reads back exactly', () => {
    const text = render('v: {{quote row.v}}', { v: AWKWARD });
    assert.equal(text, 'v: "acme & co\\"\\n: x"');
    assert.deepEqual(load(text), { v: AWKWARD });
    // A space before the closing brace: `}}}` would close a triple-stash.
    assert.deepEqual(JSON.parse(render('{"v": {{quote row.v}} }', { v: AWKWARD })), { v: AWKWARD });
  });

  test('quote escapes what a YAML stream may not hold raw', () => {
    const value = 'del\u007f nel\u0085 ls\u2028 bom\ufeff tab\t';
    const text = render('v: {{quote row.v}}', { v: value });
    assert.match(text, /\\u007f/);
    assert.match(text, /\\u2028/);
    assert.deepEqual(load(text), { v: value });
  });

  test('quote makes numbers, booleans and NULL strings', () => {
    assert.deepEqual(load(render('a: {{quote row.a}}\nb: {{quote row.b}}\nc: {{quote row.c}}', { a: 1, b: true, c: null })), {
      a: '1',
      b: 'true',
      c: '',
    });
  });

  test("squote doubles single quotes", () => {
    const text = render('v: {{squote row.v}}', { v: "it's # a: 'test'" });
    assert.equal(text, "v: 'it''s # a: ''test'''");
    assert.deepEqual(load(text), { v: "it's # a: 'test'" });
  });

  test('squote falls back to double quotes for a line break, which single quotes would fold', () => {
    const text = render('v: {{squote row.v}}', { v: AWKWARD });
    assert.equal(text, 'v: "acme & co\\"\\n: x"');
    assert.deepEqual(load(text), { v: AWKWARD });
  });

  test('toJson is compact JSON that reads back through YAML', () => {
    const value = { name: AWKWARD, list: [1, 'two', null, true], nested: { when: new Date('2024-01-02T03:04:05Z') } };
    const text = render('v: {{toJson row.v}}', { v: value });
    assert.equal(text, 'v: {"name":"acme & co\\"\\n: x","list":[1,"two",null,true],"nested":{"when":"2024-01-02T03:04:05.000Z"}}');
    assert.deepEqual(load(text), {
      v: { name: AWKWARD, list: [1, 'two', null, true], nested: { when: '2024-01-02T03:04:05.000Z' } },
    });
  });

  test('toJson inside quote gives a string holding JSON', () => {
    const text = render('v: {{quote (toJson row.v)}}', { v: { a: AWKWARD } });
    assert.deepEqual(JSON.parse((load(text) as { v: string }).v), { a: AWKWARD });
  });

  test('toYaml is block YAML without a trailing newline, quoting what another reader could retype', () => {
    const value = { name: AWKWARD, flag: 'yes', day: '2024-01-02', count: 3, list: ['a', 'b'] };
    const text = render('{{toYaml row.v}}', { v: value });
    assert.equal(text.endsWith('\n'), false);
    assert.match(text, /^flag: 'yes'$/m);
    assert.match(text, /^day: '2024-01-02'$/m);
    assert.deepEqual(load(text), value);
  });

  test('toYaml nested with nindent reads back', () => {
    const value = { name: AWKWARD, list: [{ k: 'v' }] };
    const text = render('data:\n  inner:{{nindent 4 (toYaml row.v)}}\n  after: 1', { v: value });
    assert.deepEqual(load(text), { data: { inner: value, after: 1 } });
  });
});

describe('encoding helpers', () => {
  test('b64enc and b64dec round trip UTF-8', () => {
    assert.equal(render('{{b64enc row.v}}', { v: 'héllo' }), Buffer.from('héllo').toString('base64'));
    assert.equal(render('{{{b64dec (b64enc row.v)}}}', { v: AWKWARD }), AWKWARD);
    assert.equal(render('{{b64dec "aGk"}}'), 'hi', 'padding is optional');
    assert.equal(render('{{b64dec "_-8"}}'.replace('_-8', Buffer.from('\u00ff\u00fe').toString('base64url'))), '\u00ff\u00fe');
  });

  test('b64dec refuses text that is not base64 and bytes that are not UTF-8', () => {
    assert.match(failure('{{b64dec "not base64!"}}'), /b64dec: the value is not base64/);
    assert.match(failure('{{b64dec "/w=="}}'), /b64dec: the decoded bytes are not UTF-8 text/);
  });

  test('sha256 is the hex digest of the UTF-8 text', () => {
    assert.equal(render('{{sha256 "abc"}}'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  test('bytes (bytea) render as base64', () => {
    assert.equal(render('{{row.v}}', { v: new Uint8Array([0, 255, 1]) }), 'AP8B');
  });
});

describe('time helpers', () => {
  test('now is the clock as ISO 8601', () => {
    assert.equal(render('{{now}}'), '2024-05-06T07:08:09.123Z');
  });

  test('date formats in UTC: ISO by default, tokens, [literals]', () => {
    const row = { d: new Date('2024-02-03T04:05:06.007Z') };
    assert.equal(render('{{date row.d}}', row), '2024-02-03T04:05:06.007Z');
    assert.equal(render('{{date row.d "YYYY-MM-DD"}}', row), '2024-02-03');
    assert.equal(render('{{date row.d "YYYY-MM-DD[T]HH:mm:ss.SSS[Z]"}}', row), '2024-02-03T04:05:06.007Z');
    assert.equal(render('{{date row.d "DD/MM/YYYY [at] HH:mm"}}', row), '03/02/2024 at 04:05');
    assert.equal(render('{{date row.d "X"}}', row), String(Math.floor(row.d.getTime() / 1000)));
    assert.equal(render('{{date (now) "YYYY"}}'), '2024');
  });

  test('date reads ISO text with or without offset (no offset is UTC) and epoch milliseconds', () => {
    assert.equal(render('{{date "2024-02-03"}}'), '2024-02-03T00:00:00.000Z');
    assert.equal(render('{{date "2024-02-03 10:00:00"}}'), '2024-02-03T10:00:00.000Z');
    assert.equal(render('{{date "2024-02-03T10:00:00+02:00"}}'), '2024-02-03T08:00:00.000Z');
    assert.equal(render('{{date "2024-02-03 10:00:00.5-0130"}}'), '2024-02-03T11:30:00.500Z');
    assert.equal(render('{{date row.ms}}', { ms: 0 }), '1970-01-01T00:00:00.000Z');
  });

  test('date refuses text that is not a date, and impossible dates', () => {
    assert.match(failure('{{date "next tuesday"}}'), /date: expected an ISO 8601 date/);
    assert.match(failure('{{date "2024-02-30"}}'), /date: expected a real calendar date/);
    assert.match(failure('{{date row.v}}', { v: { a: 1 } }), /date: expected a date but got an object/);
  });

  test('a template Date column renders as ISO 8601 whatever the time zone', () => {
    assert.equal(render('{{row.d}}', { d: new Date('2024-02-03T04:05:06Z') }), '2024-02-03T04:05:06.000Z');
  });
});

describe('layout helpers', () => {
  test('indent pads every non-empty line; nindent starts with a newline', () => {
    assert.equal(render('{{{indent 2 row.v}}}', { v: 'a\n\nb' }), '  a\n\n  b');
    assert.equal(render('x:{{{nindent 4 row.v}}}', { v: 'a\nb' }), 'x:\n    a\n    b');
    assert.equal(render('x: |{{nindent 4 row.v}}', { v: 'a\nb' }), 'x: |\n    a\n    b', 'in a block scalar');
    assert.equal(render('x:{{nindent 4 row.v}}', { v: 'a\nb' }), 'x:\n    "a\\nb"', 'elsewhere one quoted scalar');
    assert.equal(render('{{indent "3" "a"}}'), '   a', 'a numeric string width is accepted');
  });

  test('indent refuses a width that is not a small whole number', () => {
    assert.match(failure('{{indent -1 "a"}}'), /indent: the width must be an integer/);
    assert.match(failure('{{indent "x" "a"}}'), /indent: the width must be an integer/);
  });

  test('join and split', () => {
    assert.equal(render('{{{join row.v ", "}}}', { v: ['a', 1, null, true] }), 'a, 1, , true');
    assert.equal(render('{{{join row.v}}}', { v: ['a', 'b'] }), 'a,b', 'the separator defaults to ","');
    assert.equal(render('{{#each (split row.v ";")}}[{{this}}]{{/each}}', { v: 'a;b;;c' }), '[a][b][][c]');
    assert.equal(render('{{#each (split row.v)}}[{{this}}]{{else}}none{{/each}}', { v: '' }), 'none');
    assert.equal(render('{{join (split row.v "-") "+"}}', { v: 'x-y' }), 'x+y');
  });

  test('join refuses what is not a list', () => {
    assert.match(failure('{{join row.v}}', { v: 'abc' }), /join: expected a list but got a string/);
  });
});

describe('logic helpers', () => {
  test('eq and ne compare strictly', () => {
    assert.equal(render('{{eq row.a "x"}} {{eq row.n 3}} {{eq row.s 3}} {{ne row.a "y"}} {{ne row.n 3}}', { a: 'x', n: 3, s: '3' }), 'true true false true false');
    assert.equal(render('{{#if (eq cluster.labels.region "eu")}}EU{{else}}other{{/if}}'), 'EU');
  });

  test('and/or take any number of arguments and return one of them; not negates', () => {
    const row = { a: 'A', b: '', c: 'C', none: null, empty: [] };
    assert.equal(render('{{and row.a row.c}}|{{and row.a row.b row.c}}|{{and row.a}}', row), 'C||A');
    assert.equal(render('{{or row.none row.b row.c}}|{{or row.none row.b}}|{{or row.empty row.a}}', row), 'C||A');
    assert.equal(render('{{#if (and row.a (or row.none row.c))}}yes{{/if}}', row), 'yes');
    assert.equal(render('{{not row.a}} {{not row.b}} {{not row.empty}}', row), 'false true true');
  });

  test('a helper called with the wrong number of arguments names its usage and the line', () => {
    assert.match(failure('a\n{{eq row.a}}', { a: 1 }), /template line 2, column 1: eq: usage: eq a b/);
    assert.match(failure('{{and}}'), /and: usage/);
  });
});

test('block tags alone on their line leave no blank line or indentation behind', () => {
  assert.equal(render('a:\n  {{#if row.on}}\n  b: 1\n  {{/if}}\n  {{#each row.list}}\n  - {{this}}\n  {{/each}}\nc: 2', { on: true, list: ['x', 'y'] }), 'a:\n  b: 1\n  - x\n  - y\nc: 2');
});

test('every documented helper is registered and has a test above', () => {
  assert.deepEqual(
    [...HELPER_NAMES].sort(),
    ['and', 'b64dec', 'b64enc', 'date', 'default', 'eq', 'indent', 'join', 'lower', 'ne', 'nindent', 'not', 'now', 'or', 'quote', 'sha256', 'split', 'squote', 'toJson', 'toYaml', 'trim', 'upper'].sort(),
  );
});
