import { DbError } from './errors.ts';

/**
 * A table or column name from a user's spec, parsed the way PostgreSQL reads
 * it, and its safely quoted form. User names go into SQL text only through
 * here: identifiers cannot be bind parameters.
 */
export interface QualifiedName {
  /** The schema as PostgreSQL sees it (case folded unless quoted), or undefined for search_path lookup. */
  readonly schema: string | undefined;
  readonly name: string;
  /** `"schema"."name"` or `"name"`: every part double-quoted, embedded quotes doubled. */
  readonly sql: string;
}

/** NAMEDATALEN - 1: PostgreSQL truncates longer names (with a NOTICE), which would silently address another object. */
const maxIdentifierBytes = 63;

/** Unquoted: ASCII only, so case folding is exactly PostgreSQL's (it folds A-Z alone); anything else goes in double quotes. */
const unquotedPart = /^[A-Za-z_][A-Za-z0-9_$]*$/;

/** Double-quotes one identifier; the only character to escape inside is the double quote itself. */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function describe(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
}

/**
 * Parses `name` or `schema.name`, each part either a plain identifier (folded
 * to lower case, as PostgreSQL does: `Users` is `users`) or a double-quoted
 * one (`"My Table"`, kept as written, `""` for a quote). Anything else —
 * spaces, semicolons, parentheses, a third part, an empty or over-long part —
 * is refused with a terminal DbError naming `field`, so a spec value can never
 * add SQL of its own.
 */
export function parseQualifiedName(text: string, field: string, options: { maxParts: 1 | 2 } = { maxParts: 2 }): QualifiedName {
  const what = options.maxParts === 1 ? 'a column name' : 'a table name';
  const shape = options.maxParts === 1 ? 'name' : 'name or schema.name';
  const fail = (why: string): never => {
    throw new DbError('ROWCAST_INVALID_IDENTIFIER', `${field}: ${describe(text)} is not ${what} (${why}); use ${shape}, each part letters, digits and _ or "double-quoted"`);
  };
  const parts: string[] = [];
  let i = 0;
  const input = text.trim();
  if (input === '') fail('it is empty');
  for (;;) {
    let part: string;
    if (input[i] === '"') {
      let j = i + 1;
      part = '';
      for (;;) {
        if (j >= input.length) fail('an unterminated double quote');
        if (input[j] === '"') {
          if (input[j + 1] === '"') {
            part += '"';
            j += 2;
            continue;
          }
          break;
        }
        part += input.charAt(j);
        j += 1;
      }
      if (part === '') fail('an empty quoted part');
      i = j + 1;
    } else {
      const end = input.indexOf('.', i);
      const raw = end === -1 ? input.slice(i) : input.slice(i, end);
      if (!unquotedPart.test(raw)) fail(raw === '' ? 'an empty part' : `${describe(raw)} needs double quotes or is not a name`);
      part = raw.toLowerCase();
      i += raw.length;
    }
    if (part.includes('\0')) fail('a NUL character');
    if (Buffer.byteLength(part) > maxIdentifierBytes) fail(`a part longer than ${maxIdentifierBytes} bytes`);
    parts.push(part);
    if (i === input.length) break;
    if (input[i] !== '.') fail(`unexpected ${describe(input.slice(i, i + 1))} after a part`);
    i += 1;
    if (parts.length >= options.maxParts) fail(`more than ${options.maxParts} part${options.maxParts === 1 ? '' : 's'}`);
  }
  const name = parts[parts.length - 1] ?? '';
  const schema = parts.length === 2 ? parts[0] : undefined;
  return { schema, name, sql: parts.map(quoteIdentifier).join('.') };
}
