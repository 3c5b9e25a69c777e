import { CORE_SCHEMA, Type, YAMLException, loadAll } from 'js-yaml';

/**
 * YAML 1.2 core schema plus merge keys (`<<: *base`). Core, not js-yaml's
 * default: no timestamps (a date stays the string the apiserver expects, never
 * a JS Date), no !!binary/!!set/!!omap, and yes/no/on/off stay strings (YAML
 * 1.1 readers such as kubectl would make them booleans; quote them to be
 * safe with both). js-yaml's JSON_SCHEMA is the same schema. The merge type
 * is js-yaml's own, restated because its typings do not export it.
 */
const SCHEMA = CORE_SCHEMA.extend({
  implicit: [new Type('tag:yaml.org,2002:merge', { kind: 'scalar', resolve: (data: unknown) => data === '<<' || data === null })],
});

export interface ParsedDocument {
  index: number;
  value: unknown;
}

export type ParseOutcome =
  | { ok: true; documents: ParsedDocument[] }
  | { ok: false; message: string };

/**
 * Splits a row's output into documents: YAML (`---` separated) or JSON (one
 * object, or an array of objects). A top-level list's items count as
 * documents of their own. Empty documents are skipped but keep their number,
 * so `document` always points at the right place in the output.
 *
 * Messages carry positions, never the text: the output may hold secrets.
 * The values may share subtrees (YAML aliases) and hold .inf or .nan: the
 * caller copies them before use.
 */
export function parseOutput(text: string): ParseOutcome {
  const first = /\S/.exec(text)?.[0];
  if (first === '{' || first === '[') {
    // JSON.parse is ten times faster than YAML and JSON is YAML anyway: on a
    // syntax error fall through to YAML, which also reads flow mappings.
    try {
      return { ok: true, documents: flatten([JSON.parse(text) as unknown]) };
    } catch {
      // not JSON
    }
  }
  let raw: unknown[];
  try {
    raw = loadAll(text, null, { schema: SCHEMA });
  } catch (error) {
    if (error instanceof YAMLException) {
      return { ok: false, message: `output line ${error.mark.line + 1}, column ${error.mark.column + 1}: ${error.reason}` };
    }
    return { ok: false, message: `output is not valid YAML: ${error instanceof Error ? error.name : 'error'}` };
  }
  return { ok: true, documents: flatten(raw) };
}

function flatten(values: unknown[]): ParsedDocument[] {
  const documents: ParsedDocument[] = [];
  let index = 0;
  for (const value of values) {
    const items = Array.isArray(value) ? value : [value];
    for (const item of items) {
      if (item !== null && item !== undefined) documents.push({ index, value: item });
      index++;
    }
  }
  return documents;
}
