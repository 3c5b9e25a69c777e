import { YAML_LIMITS, loadYamlDocuments } from '../api/index.ts';

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
 * A template author could emit an alias bomb or absurd nesting: the shared
 * loader refuses both. The values may still share subtrees (YAML aliases,
 * within its bounds) and hold .inf or .nan: the caller copies them before use.
 */
export function parseOutput(text: string): ParseOutcome {
  const loaded = loadYamlDocuments(text, YAML_LIMITS.output);
  if (!loaded.ok) return { ok: false, message: `output ${loaded.problem.kind === 'invalid' ? '' : 'refused: '}${loaded.problem.message}` };
  return { ok: true, documents: flatten(loaded.documents) };
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
