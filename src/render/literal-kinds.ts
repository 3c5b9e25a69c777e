/**
 * The kinds a template names literally, as `group/Kind` keys (`/Kind` for
 * the core group): every pair of an `apiVersion` and a `kind` whose values
 * are written out in the template's text (no `{{...}}` in them) as keys of
 * the same object, a YAML block mapping or a JSON/flow one. This is the
 * default of spec.allowedKinds, so a template that computes its kind, or
 * its apiVersion, must list what it may render.
 */
export function literalKinds(source: string): Set<string> {
  // Same length, so columns hold; NUL marks a value that is not literal.
  const text = source.replace(/\{\{\{?[\s\S]*?\}?\}\}/g, (m) => '\u0000'.repeat(m.length));
  const containers = new Map<string, { apiVersions: Set<string>; kinds: Set<string> }>();
  const record = (container: string, key: string, value: string): void => {
    let entry = containers.get(container);
    if (entry === undefined) {
      entry = { apiVersions: new Set(), kinds: new Set() };
      containers.set(container, entry);
    }
    if (key === 'apiVersion' && API_VERSION.test(value)) entry.apiVersions.add(value);
    if (key === 'kind' && KIND.test(value)) entry.kinds.add(value);
  };

  let document = 0;
  // Per key column: how many times a shallower line (a new parent) or a new
  // `- ` item began there; two keys share a block mapping when equal.
  let segments: number[] = [];
  const braces: number[] = [];
  let quote: '"' | "'" | undefined;
  const lines = text.split('\n');
  let offset = 0;
  for (const line of lines) {
    const start = offset;
    offset += line.length + 1;
    if (quote === undefined && braces.length === 0) {
      if (/^(---|\.\.\.)(\s|$)/.test(line)) {
        document++;
        segments = [];
        continue;
      }
      // Tags at the start of a line (`{{else}}kind: X`) are mostly blocks,
      // which write nothing: they take no column.
      const lead = /^[ \u0000]*/.exec(line)?.[0] ?? '';
      const content = lead.replaceAll('\u0000', '').length;
      const rest = line.slice(lead.length);
      if (rest.trim().replaceAll('\u0000', '') === '' || rest.startsWith('#')) continue;
      const dashes = /^(-[ ]+)*/.exec(rest)?.[0].length ?? 0;
      const keyColumn = content + dashes;
      while (segments.length <= keyColumn) segments.push(0);
      for (let c = content + 1; c < segments.length; c++) segments[c] = (segments[c] ?? 0) + 1;
      const pair = KEY_VALUE.exec(rest.slice(dashes));
      if (pair !== null) record(`block:${document}:${keyColumn}:${segments[keyColumn] ?? 0}`, pair[1] ?? pair[2] ?? pair[3] ?? '', unquote(pair[4] ?? ''));
    }
    // JSON and flow mappings: keys at the same brace belong together.
    for (let i = 0; i < line.length; i++) {
      const c = line[i];
      if (quote !== undefined) {
        if (c === '\\' && quote === '"') i++;
        else if (c === quote) quote = undefined;
        continue;
      }
      if ((c === '"' || c === "'") && (i === 0 || /[\s[{,:]/.test(line[i - 1] ?? ''))) {
        if (braces.length > 0) {
          const pair = KEY_VALUE.exec(line.slice(i));
          if (pair !== null) record(`brace:${braces[braces.length - 1] ?? 0}`, pair[1] ?? pair[2] ?? pair[3] ?? '', unquote(pair[4] ?? ''));
        }
        quote = c;
      } else if (c === '{' || c === '[') {
        braces.push(start + i);
      } else if (c === '}' || c === ']') {
        braces.pop();
      } else if (c === '#' && (i === 0 || /\s/.test(line[i - 1] ?? ''))) {
        break;
      } else if (braces.length > 0 && /[A-Za-z]/.test(c ?? '') && /[\s{,]/.test(line[i - 1] ?? ' ')) {
        const pair = KEY_VALUE.exec(line.slice(i));
        if (pair !== null) record(`brace:${braces[braces.length - 1] ?? 0}`, pair[1] ?? pair[2] ?? pair[3] ?? '', unquote(pair[4] ?? ''));
      }
    }
  }

  const kinds = new Set<string>();
  for (const { apiVersions, kinds: named } of containers.values()) {
    for (const apiVersion of apiVersions) for (const kind of named) kinds.add(kindKey(apiVersion, kind));
  }
  return kinds;
}

/** `group/Kind`, `/Kind` for the core group: how allowed kinds are compared. */
export function kindKey(apiVersion: string, kind: string): string {
  const slash = apiVersion.indexOf('/');
  return `${slash < 0 ? '' : apiVersion.slice(0, slash)}/${kind}`;
}

/** A spec.allowedKinds entry as a key: `Kind` is the core group's. */
export function allowedKindKey(entry: string): string {
  return entry.includes('/') ? entry : `/${entry}`;
}

function unquote(value: string): string {
  const v = value.trim();
  if (v.length >= 2 && (v[0] === '"' || v[0] === "'") && v[v.length - 1] === v[0]) return v.slice(1, -1);
  return v;
}

// `apiVersion: v1`, `"kind": "ConfigMap"`, `'kind': 'X'`; the value ends at
// a comma, brace, comment or the line's end.
const KEY_VALUE = /^(?:(apiVersion|kind)|"(apiVersion|kind)"|'(apiVersion|kind)')[ \t]*:[ \t]*("[^"\u0000]*"|'[^'\u0000]*'|[^\s,{}[\]#"'\u0000]+)[ \t]*(?:[,}\]#]|$)/;
const API_VERSION = /^(?:[a-z0-9]([-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?v[0-9][a-z0-9]*$/;
const KIND = /^[A-Z][A-Za-z0-9]*$/;
