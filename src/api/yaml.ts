import { CORE_SCHEMA, Type, YAMLException, loadAll, type LoadOptions } from 'js-yaml';

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

export interface YamlLimits {
  /** Longest text, in UTF-8 bytes, read at all. */
  maxBytes: number;
  /** Deepest nesting of mappings and sequences, aliases resolved. */
  maxDepth: number;
}

/**
 * What users hand Rowcast as YAML, each with its own limits. A kubeconfig
 * reduced to one context is a few KB (256 KiB leaves room for long CA
 * bundles; a Secret may hold 1 MiB); DQR files are one object the apiserver
 * would take (3 MiB requests); a row's output is bounded by the renderer's
 * own cap, and CRD-like objects nest deeply.
 */
export const YAML_LIMITS = {
  kubeconfig: { maxBytes: 256 * 1024, maxDepth: 32 },
  file: { maxBytes: 3 * 1024 * 1024, maxDepth: 100 },
  output: { maxBytes: 8 * 1024 * 1024, maxDepth: 200 },
} as const satisfies Record<string, YamlLimits>;

export type YamlProblemKind = 'too-large' | 'too-deep' | 'alias-expansion' | 'invalid';

/** Words safe for a condition or an error: positions and limits, never the text (it may hold secrets). */
export interface YamlProblem {
  kind: YamlProblemKind;
  message: string;
}

export type YamlLoad = { ok: true; documents: unknown[] } | { ok: false; problem: YamlProblem };

/**
 * The one way Rowcast reads YAML (or JSON) that a user wrote: kubeconfigs
 * from Secrets, DQR files, a template's output. js-yaml resolves an alias to
 * the same object, so a 1.5 KB "billion laughs" parses into a small graph that
 * explodes only when something walks or serialises it (JSON.stringify, a
 * deep copy, client-node's own loader): the hub ran out of heap that way. So
 * the text is refused past a size limit, nesting past a depth limit (during
 * the parse, before the stack could overflow), and the parsed value once,
 * walked with aliases resolved, if it would be more than twice the size limit
 * (each node costs one, each string or key its length) or holds an alias to
 * one of its own ancestors. What passes can be walked and serialised safely.
 */
export function loadYamlDocuments(text: string, limits: YamlLimits): YamlLoad {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > limits.maxBytes) {
    return { ok: false, problem: { kind: 'too-large', message: `${bytes} bytes, more than the limit of ${limits.maxBytes}` } };
  }
  let documents: unknown[] | undefined;
  const first = /\S/.exec(text)?.[0];
  if (first === '{' || first === '[') {
    // JSON.parse is ten times faster than YAML and JSON is YAML anyway: on a
    // syntax error fall through to YAML, which also reads flow mappings.
    try {
      documents = [JSON.parse(text) as unknown];
    } catch {
      // not JSON
    }
  }
  if (documents === undefined) {
    // js-yaml 4.3 takes maxDepth; its typings (4.0) do not list it yet.
    const options: LoadOptions & { maxDepth: number } = { schema: SCHEMA, maxDepth: limits.maxDepth };
    try {
      documents = loadAll(text, null, options);
    } catch (error) {
      if (error instanceof YAMLException) {
        const kind = error.reason.startsWith('nesting exceeded maxDepth') ? 'too-deep' : 'invalid';
        const where = `line ${error.mark.line + 1}, column ${error.mark.column + 1}`;
        const message = kind === 'too-deep' ? `nested deeper than the limit of ${limits.maxDepth} (${where})` : `${where}: ${error.reason}`;
        return { ok: false, problem: { kind, message } };
      }
      return { ok: false, problem: { kind: 'invalid', message: `not valid YAML: ${error instanceof Error ? error.name : 'error'}` } };
    }
  }
  const problem = checkExpanded(documents, limits);
  return problem === undefined ? { ok: true, documents } : { ok: false, problem };
}

/** The single document of a text (an empty text is `undefined`); more than one is a problem. */
export function loadYamlDocument(text: string, limits: YamlLimits): { ok: true; value: unknown } | { ok: false; problem: YamlProblem } {
  const loaded = loadYamlDocuments(text, limits);
  if (!loaded.ok) return loaded;
  if (loaded.documents.length > 1) return { ok: false, problem: { kind: 'invalid', message: `expected one YAML document, found ${loaded.documents.length}` } };
  return { ok: true, value: loaded.documents[0] };
}

function checkExpanded(documents: unknown[], limits: YamlLimits): YamlProblem | undefined {
  const budget = { left: 2 * limits.maxBytes };
  const ancestors = new Set<object>();
  const visit = (value: unknown, depth: number): YamlProblem | undefined => {
    budget.left -= typeof value === 'string' ? value.length + 1 : 1;
    if (budget.left < 0) {
      return { kind: 'alias-expansion', message: `its aliases expand it past twice the size limit of ${limits.maxBytes} bytes` };
    }
    if (typeof value !== 'object' || value === null) return undefined;
    if (depth >= limits.maxDepth) return { kind: 'too-deep', message: `nested deeper than the limit of ${limits.maxDepth} once its aliases are resolved` };
    if (ancestors.has(value)) return { kind: 'alias-expansion', message: 'an alias refers to a node that contains it' };
    ancestors.add(value);
    try {
      if (Array.isArray(value)) {
        for (const item of value) {
          const problem = visit(item, depth + 1);
          if (problem !== undefined) return problem;
        }
      } else {
        for (const [key, item] of Object.entries(value)) {
          budget.left -= key.length;
          const problem = visit(item, depth + 1);
          if (problem !== undefined) return problem;
        }
      }
      return undefined;
    } finally {
      ancestors.delete(value);
    }
  };
  for (const document of documents) {
    const problem = visit(document, 0);
    if (problem !== undefined) return problem;
  }
  return undefined;
}
