import type pg from 'pg';

/**
 * What templates see for each PostgreSQL type. A private table, handed to each
 * pool (`types`) and to each cursor, so pg's global parsers stay untouched for
 * any other code in the process.
 *
 * Choices (docs/database.md has the table):
 * - int8 and numeric stay strings: a JavaScript number would round
 *   9007199254740993 and 0.1 + 0.2 alike, and a row key must be exact.
 * - Timestamps and dates become ISO-8601 strings, not Date: Handlebars prints a
 *   Date with toString() ("Tue Jan 02 2024 ..."), which is locale-shaped and
 *   loses microseconds.
 * - bytea becomes base64, the form Kubernetes Secrets and ConfigMap binaryData use.
 * - Any type not listed stays PostgreSQL's text form; arrays of listed types
 *   become arrays.
 */
type Parser = (text: string) => unknown;

const identity: Parser = (text) => text;
const toNumber: Parser = (text) => Number(text);
const toBoolean: Parser = (text) => text === 't' || text === 'true';
const toJson: Parser = (text) => JSON.parse(text) as unknown;

/** OIDs are fixed for built-in types (pg_type.dat), so a table is safe. */
const oid = {
  bool: 16,
  bytea: 17,
  char: 18,
  name: 19,
  int8: 20,
  int2: 21,
  int4: 23,
  text: 25,
  oid: 26,
  json: 114,
  xml: 142,
  float4: 700,
  float8: 701,
  money: 790,
  macaddr: 829,
  inet: 869,
  cidr: 650,
  bpchar: 1042,
  varchar: 1043,
  date: 1082,
  time: 1083,
  timestamp: 1114,
  timestamptz: 1184,
  interval: 1186,
  timetz: 1266,
  numeric: 1700,
  uuid: 2950,
  jsonb: 3802,
} as const;

const scalarParsers = new Map<number, Parser>([
  [oid.bool, toBoolean],
  [oid.bytea, parseBytea],
  [oid.int8, identity],
  [oid.int2, toNumber],
  [oid.int4, toNumber],
  [oid.oid, toNumber],
  [oid.float4, toNumber],
  [oid.float8, toNumber],
  [oid.numeric, identity],
  [oid.json, toJson],
  [oid.jsonb, toJson],
  [oid.date, parseDate],
  [oid.timestamp, parseTimestamp],
  [oid.timestamptz, parseTimestamptz],
]);

/** Array type OID → element type OID, for the built-in types above and the common text-like ones. */
const arrayElements = new Map<number, number>([
  [1000, oid.bool],
  [1001, oid.bytea],
  [1002, oid.char],
  [1003, oid.name],
  [1016, oid.int8],
  [1005, oid.int2],
  [1007, oid.int4],
  [1009, oid.text],
  [1028, oid.oid],
  [199, oid.json],
  [143, oid.xml],
  [1021, oid.float4],
  [1022, oid.float8],
  [791, oid.money],
  [1040, oid.macaddr],
  [1041, oid.inet],
  [651, oid.cidr],
  [1014, oid.bpchar],
  [1015, oid.varchar],
  [1182, oid.date],
  [1183, oid.time],
  [1115, oid.timestamp],
  [1185, oid.timestamptz],
  [1187, oid.interval],
  [1270, oid.timetz],
  [1231, oid.numeric],
  [2951, oid.uuid],
  [3807, oid.jsonb],
]);

function parserFor(typeId: number): Parser {
  const scalar = scalarParsers.get(typeId);
  if (scalar !== undefined) return scalar;
  const element = arrayElements.get(typeId);
  if (element !== undefined) {
    const parseElement = scalarParsers.get(element) ?? identity;
    return (text) => parseArray(text, parseElement);
  }
  return identity;
}

/**
 * The pg `types` object for pools and cursors. Rowcast asks only for text
 * format; a binary-format request (never made) would get the raw value.
 */
export const rowcastTypes: pg.CustomTypesConfig = {
  getTypeParser: ((typeId: number, format?: string) => (format === 'binary' ? identity : parserFor(typeId))) as pg.CustomTypesConfig['getTypeParser'],
};

/**
 * Parses PostgreSQL's array literal: `{1,2,NULL}`, `{"a b","c\"d"}`, nested
 * `{{1,2},{3,4}}`, and the `[0:1]={...}` form arrays with other lower bounds
 * print. Unquoted NULL is null; elements are parsed by `parseElement`.
 * The delimiter is a comma for every type parsed here (only box uses `;`).
 */
export function parseArray(text: string, parseElement: Parser): unknown[] {
  let i = 0;
  if (text.startsWith('[')) {
    const eq = text.indexOf('=');
    if (eq !== -1) i = eq + 1;
  }
  const parseLevel = (): unknown[] => {
    // text[i] is '{'
    i += 1;
    const out: unknown[] = [];
    if (text[i] === '}') {
      i += 1;
      return out;
    }
    for (;;) {
      const c = text[i];
      if (c === '{') {
        out.push(parseLevel());
      } else if (c === '"') {
        let value = '';
        i += 1;
        while (i < text.length && text[i] !== '"') {
          if (text[i] === '\\') i += 1;
          value += text[i] ?? '';
          i += 1;
        }
        i += 1;
        out.push(parseElement(value));
      } else {
        const startAt = i;
        while (i < text.length && text[i] !== ',' && text[i] !== '}') i += 1;
        const raw = text.slice(startAt, i).trim();
        out.push(raw.toUpperCase() === 'NULL' ? null : parseElement(raw));
      }
      const sep = text[i];
      i += 1;
      if (sep !== ',') return out;
    }
  };
  if (text[i] !== '{') return [text];
  return parseLevel();
}

/** bytea arrives as `\x0a1b…` (bytea_output = hex, the default) or in the older escape format. */
function parseBytea(text: string): string {
  if (text.startsWith('\\x')) return Buffer.from(text.slice(2), 'hex').toString('base64');
  const bytes: number[] = [];
  for (let i = 0; i < text.length; ) {
    if (text[i] === '\\') {
      if (text[i + 1] === '\\') {
        bytes.push(0x5c);
        i += 2;
      } else {
        bytes.push(parseInt(text.slice(i + 1, i + 4), 8));
        i += 4;
      }
    } else {
      bytes.push(text.charCodeAt(i));
      i += 1;
    }
  }
  return Buffer.from(bytes).toString('base64');
}

// DateStyle ISO output, which readRows pins for its transaction: `2024-01-02`, `2024-01-02 03:04:05.123456`,
// `…+05:30`, with ` BC` for years before 1. Anything else (another DateStyle, infinity) stays as PostgreSQL printed it.
const dateRe = /^(\d{4,})-(\d{2})-(\d{2})( BC)?$/;
const timestampRe = /^(\d{4,})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:([+-])(\d{2})(?::(\d{2}))?(?::(\d{2}))?)?( BC)?$/;

/** ISO-8601 year: astronomical numbering (1 BC is 0000), a sign beyond four digits. */
function isoYear(year: number): string {
  if (year >= 0 && year <= 9999) return String(year).padStart(4, '0');
  return `${year < 0 ? '-' : '+'}${String(Math.abs(year)).padStart(6, '0')}`;
}

function astronomical(year: string, bc: string | undefined): number {
  const y = Number(year);
  return bc === undefined ? y : 1 - y;
}

function parseDate(text: string): string {
  const m = dateRe.exec(text);
  if (m === null) return text;
  return `${isoYear(astronomical(m[1] ?? '', m[4]))}-${m[2] ?? ''}-${m[3] ?? ''}`;
}

function parseTimestamp(text: string): string {
  const m = timestampRe.exec(text);
  if (m === null || m[8] !== undefined) return text;
  return `${isoYear(astronomical(m[1] ?? '', m[12]))}-${m[2] ?? ''}-${m[3] ?? ''}T${m[4] ?? ''}:${m[5] ?? ''}:${m[6] ?? ''}${m[7] ?? ''}`;
}

/**
 * Normalised to UTC with `Z`, so the text does not depend on the session's
 * TimeZone and an unchanged row renders the same bytes (the content hash stays
 * put). Day arithmetic is done here, not with Date, to keep microseconds and
 * years outside Date's comfortable range exact.
 */
function parseTimestamptz(text: string): string {
  const m = timestampRe.exec(text);
  if (m === null || m[8] === undefined) return text;
  const year = astronomical(m[1] ?? '', m[12]);
  const offset = (m[8] === '-' ? -1 : 1) * (Number(m[9]) * 3600 + Number(m[10] ?? 0) * 60 + Number(m[11] ?? 0));
  const local = daysFromCivil(year, Number(m[2]), Number(m[3])) * 86_400 + Number(m[4]) * 3600 + Number(m[5]) * 60 + Number(m[6]);
  const utc = local - offset;
  const days = Math.floor(utc / 86_400);
  const secondsOfDay = utc - days * 86_400;
  const [y, mo, d] = civilFromDays(days);
  const hh = Math.floor(secondsOfDay / 3600);
  const mm = Math.floor((secondsOfDay % 3600) / 60);
  const ss = secondsOfDay % 60;
  const two = (v: number): string => String(v).padStart(2, '0');
  return `${isoYear(y)}-${two(mo)}-${two(d)}T${two(hh)}:${two(mm)}:${two(ss)}${m[7] ?? ''}Z`;
}

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian, astronomical years).
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

function civilFromDays(days: number): [number, number, number] {
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp + (mp < 10 ? 3 : -9);
  return [yoe + era * 400 + (month <= 2 ? 1 : 0), month, day];
}
