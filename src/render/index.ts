// The render module: a row and a template in, server-side-apply bodies out.
// Pure: no I/O, no environment; the clock only through the `now` helper.
//
// Choices a template author sees:
// - `{{expr}}` is escaped for where it stands in the YAML/JSON (inside "…",
//   inside '…', unquoted, in a block scalar): a row value stays one value.
//   Structure helpers return SafeStrings; `{{{expr}}}` is raw. See
//   "Escaping in templates" in docs/api.md.
// - Handlebars, strict (no HTML escaping): a path that resolves to nothing is
//   an error naming it (also inside helper arguments and #if/#each), NULL is
//   empty text; `lookup` reads a field that may be absent. Printing a mapping
//   or list is an error (use toJson, toYaml or join). Partials, decorators and
//   `log` are refused. In JSON templates write `}} }`, not `}}}`.
// - Output is YAML read with the YAML 1.2 core schema plus merge keys: dates
//   and yes/no/on/off stay strings, no JS Dates ever reach a body. Output
//   starting with `{` or `[` is read as JSON first. A top-level list's items
//   are documents; empty documents are skipped but keep their number.
// - date formats in UTC: 'iso' (default) or tokens YYYY MM DD HH mm ss SSS X
//   (Unix seconds), [literal text]. Row Dates print as ISO 8601, bytes as base64.
// - A document whose group/kind is outside RenderOptions.allowedKinds
//   (spec.allowedKinds; default: the kinds the template names literally)
//   fails its row.
// - Row keys: one column → its text; several → a JSON array of the values.
// - Bodies have sorted keys (their JSON is the canonical form the hash covers).
export type {
  DqrOwner,
  OwnerIdentity,
  RenderContext,
  RenderFailure,
  RenderOptions,
  RenderedObject,
  RowRenderResult,
  TextRenderResult,
} from './types.ts';
export { TemplateError } from './errors.ts';
export { compileTemplate, type CompiledTemplate } from './template.ts';
export { TemplateCache, type TemplateCacheOptions } from './template-cache.ts';
export { renderRow, renderTemplate } from './render-row.ts';
export { ownerLabelValue, ownerMatcher, ownerRefValue, type OwnerMatcher, type Ownership } from './ownership.ts';
export { RowKeyError, rowKeyOf } from './row-key.ts';
export { canonicalJson, contentHash } from './canonical-json.ts';
export { HELPER_NAMES } from './helpers.ts';
export { allowedKindKey } from './literal-kinds.ts';
export { valueAt, withValuesFrom, withoutPointers } from './json-pointer.ts';
