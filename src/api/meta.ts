import { API_VERSION } from './constants.ts';
import { childPath, isRecord, type FieldError } from './validate.ts';

/**
 * Code-point order of two names: the same on every replica. localeCompare
 * follows the process's locale (LANG): in Danish "aa" sorts after "z".
 */
export function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The parts of metadata Rowcast reads: render context, ownership, confirmation. */
export interface ObjectMeta {
  readonly name: string;
  readonly namespace: string | undefined;
  readonly uid: string | undefined;
  readonly generation: number | undefined;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
}

export type LabelSelectorOperator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';

export interface LabelSelectorRequirement {
  readonly key: string;
  readonly operator: LabelSelectorOperator;
  readonly values: readonly string[];
}

/** metav1.LabelSelector with absent parts made empty. */
export interface LabelSelector {
  readonly matchLabels: Readonly<Record<string, string>>;
  readonly matchExpressions: readonly LabelSelectorRequirement[];
}

/** metav1.Condition (KEP-1623). */
export interface Condition {
  readonly type: string;
  readonly status: 'True' | 'False' | 'Unknown';
  readonly observedGeneration?: number;
  /** RFC 3339. */
  readonly lastTransitionTime: string;
  readonly reason: string;
  readonly message: string;
}

const ROOT_FIELDS = new Set(['apiVersion', 'kind', 'metadata', 'spec', 'status']);

function stringMap(value: unknown, path: string, errors: FieldError[]): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (!isRecord(value)) {
    errors.push({ path, message: 'must be a map of strings' });
    return {};
  }
  const out: Record<string, string> = {};
  for (const [key, v] of Object.entries(value)) {
    if (typeof v === 'string') out[key] = v;
    else errors.push({ path: childPath(path, key), message: 'must be of type string' });
  }
  return out;
}

function optionalString(value: unknown, path: string, errors: FieldError[]): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  errors.push({ path, message: 'must be of type string' });
  return undefined;
}

/**
 * The envelope every Rowcast object shares. Metadata is the apiserver's to
 * validate; this only refuses what would break Rowcast (no name, wrong types).
 */
export function parseEnvelope(
  obj: unknown,
  kind: string,
): { readonly errors: FieldError[]; readonly metadata: ObjectMeta | undefined; readonly spec: unknown } {
  const errors: FieldError[] = [];
  if (!isRecord(obj)) {
    errors.push({ path: '', message: `must be a ${kind} object` });
    return { errors, metadata: undefined, spec: undefined };
  }
  for (const key of Object.keys(obj)) {
    if (!ROOT_FIELDS.has(key)) errors.push({ path: key, message: 'unknown field' });
  }
  if (obj['apiVersion'] !== API_VERSION) {
    errors.push({ path: 'apiVersion', message: `must be ${JSON.stringify(API_VERSION)}` });
  }
  if (obj['kind'] !== kind) errors.push({ path: 'kind', message: `must be ${JSON.stringify(kind)}` });

  const meta = obj['metadata'];
  if (!isRecord(meta)) {
    errors.push({ path: 'metadata', message: 'Required value' });
    return { errors, metadata: undefined, spec: obj['spec'] };
  }
  const name = meta['name'];
  if (typeof name !== 'string' || name === '') errors.push({ path: 'metadata.name', message: 'Required value' });
  const generation = meta['generation'];
  if (generation !== undefined && !(typeof generation === 'number' && Number.isInteger(generation))) {
    errors.push({ path: 'metadata.generation', message: 'must be of type integer' });
  }
  const metadata: ObjectMeta = {
    name: typeof name === 'string' ? name : '',
    namespace: optionalString(meta['namespace'], 'metadata.namespace', errors),
    uid: optionalString(meta['uid'], 'metadata.uid', errors),
    generation: typeof generation === 'number' ? generation : undefined,
    labels: stringMap(meta['labels'], 'metadata.labels', errors),
    annotations: stringMap(meta['annotations'], 'metadata.annotations', errors),
  };
  return { errors, metadata, spec: obj['spec'] };
}

/** The parsed form of a validated label selector; `raw` is known to be well formed. */
export function toLabelSelector(raw: {
  readonly matchLabels?: Readonly<Record<string, string>>;
  readonly matchExpressions?: readonly { key: string; operator: LabelSelectorOperator; values?: readonly string[] }[];
}): LabelSelector {
  return {
    matchLabels: raw.matchLabels ?? {},
    matchExpressions: (raw.matchExpressions ?? []).map((e) => ({ key: e.key, operator: e.operator, values: e.values ?? [] })),
  };
}
