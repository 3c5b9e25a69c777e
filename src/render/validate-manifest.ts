import { Buffer } from 'node:buffer';
import {
  ANNOTATIONS_MAX_BYTES,
  apiVersionProblem,
  isDnsLabel,
  isDnsSubdomain,
  isKind,
  labelValueProblem,
  qualifiedNameProblem,
} from './kube-names.ts';
import { RESERVED_KEY_PREFIX } from './ownership.ts';

export interface Problem {
  field: string;
  message: string;
}

export interface ValidManifest {
  body: Record<string, unknown>;
  metadata: Record<string, unknown>;
  apiVersion: string;
  kind: string;
  name: string;
  /** undefined when the document has none. */
  namespace: string | undefined;
}

/**
 * Fields the apiserver owns. Owner references cannot point across clusters,
 * and generateName gives no stable name to apply and prune by.
 */
const FORBIDDEN_METADATA = [
  'managedFields',
  'resourceVersion',
  'uid',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'selfLink',
  'ownerReferences',
  'generateName',
] as const;

const SHOWN_MAX = 80;

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return `a ${typeof value}`;
}

// Names, namespaces and label keys/values are shown in messages: a person
// needs to see what was wrong, and they are printed by every `kubectl get`
// anyway. Annotation values are never shown: they may hold anything.
function show(value: string): string {
  return JSON.stringify(value.length > SHOWN_MAX ? `${value.slice(0, SHOWN_MAX)}…` : value);
}

function mapKey(path: string, key: string): string {
  return `${path}[${key}]`;
}

/** Checks one document; returns the manifest or every problem found. */
export function validateManifest(document: unknown): ValidManifest | Problem[] {
  const problems: Problem[] = [];
  if (!isRecord(document)) return [{ field: '.', message: `a document must be a mapping, not ${describe(document)}` }];

  const { apiVersion, kind, metadata } = document;
  if (typeof apiVersion !== 'string' || apiVersion === '') {
    problems.push({ field: 'apiVersion', message: 'required: a non-empty string' });
  } else {
    const problem = apiVersionProblem(apiVersion);
    if (problem !== undefined) problems.push({ field: 'apiVersion', message: `${show(apiVersion)}: ${problem}` });
  }
  if (typeof kind !== 'string' || kind === '') {
    problems.push({ field: 'kind', message: 'required: a non-empty string' });
  } else if (!isKind(kind)) {
    problems.push({ field: 'kind', message: `${show(kind)}: must start with a letter and hold only letters, digits and "-"` });
  }
  if (Object.hasOwn(document, 'status')) {
    problems.push({ field: 'status', message: 'must not be set: status belongs to the member cluster' });
  }

  if (!isRecord(metadata)) {
    problems.push(
      metadata === undefined
        ? { field: 'metadata.name', message: 'required' }
        : { field: 'metadata', message: `must be a mapping, not ${describe(metadata)}` },
    );
    return problems;
  }

  const { name, namespace } = metadata;
  if (name === undefined) {
    problems.push({ field: 'metadata.name', message: 'required' });
  } else if (typeof name !== 'string') {
    problems.push({ field: 'metadata.name', message: `must be a string, not ${describe(name)}` });
  } else if (!isDnsSubdomain(name)) {
    problems.push({
      field: 'metadata.name',
      message: `${show(name)}: must be a DNS-1123 subdomain: at most 253 lowercase alphanumerics, "-" or ".", starting and ending with an alphanumeric`,
    });
  }
  const hasNamespace = Object.hasOwn(metadata, 'namespace');
  if (hasNamespace) {
    if (typeof namespace !== 'string') {
      problems.push({
        field: 'metadata.namespace',
        message: `must be a string, not ${describe(namespace)} (leave it out to use the DatabaseQueryResource's namespace)`,
      });
    } else if (!isDnsLabel(namespace)) {
      problems.push({
        field: 'metadata.namespace',
        message: `${show(namespace)}: must be a DNS-1123 label: at most 63 lowercase alphanumerics or "-", starting and ending with an alphanumeric`,
      });
    }
  }
  for (const field of FORBIDDEN_METADATA) {
    if (Object.hasOwn(metadata, field)) {
      problems.push({
        field: `metadata.${field}`,
        message:
          field === 'ownerReferences'
            ? 'must not be set: owner references cannot cross clusters (Rowcast records the owner in annotations)'
            : field === 'generateName'
              ? 'must not be set: objects need a fixed metadata.name to be applied and pruned'
              : 'must not be set: the member cluster sets it',
      });
    }
  }
  checkStringMap(metadata, 'labels', problems);
  checkStringMap(metadata, 'annotations', problems);

  if (problems.length > 0) return problems;
  return {
    body: document,
    metadata,
    apiVersion: apiVersion as string,
    kind: kind as string,
    name: name as string,
    namespace: hasNamespace ? (namespace as string) : undefined,
  };
}

function checkStringMap(metadata: Record<string, unknown>, which: 'labels' | 'annotations', problems: Problem[]): void {
  if (!Object.hasOwn(metadata, which)) return;
  const map = metadata[which];
  const path = `metadata.${which}`;
  // `labels:` with nothing under it reads as null; the apiserver takes that as empty.
  if (map === null) return;
  if (!isRecord(map)) {
    problems.push({ field: path, message: `must be a mapping of strings, not ${describe(map)}` });
    return;
  }
  for (const [key, value] of Object.entries(map)) {
    const field = mapKey(path, key);
    // Annotation keys are checked in lowercase, as the apiserver does.
    const keyProblem = qualifiedNameProblem(which === 'labels' ? key : key.toLowerCase());
    if (keyProblem !== undefined) {
      problems.push({ field, message: `key ${show(key)}: ${keyProblem}` });
    } else if (key.startsWith(RESERVED_KEY_PREFIX)) {
      problems.push({ field, message: `keys under ${RESERVED_KEY_PREFIX} are set by Rowcast, not by templates` });
    }
    if (typeof value !== 'string') {
      problems.push({
        field,
        message: `must be a string, not ${describe(value)} (quote it: YAML reads true, 1 or null as other types)`,
      });
      continue;
    }
    if (which === 'labels') {
      const valueProblem = labelValueProblem(value);
      if (valueProblem !== undefined) problems.push({ field, message: `value ${show(value)}: ${valueProblem}` });
    }
  }
}

/** The annotations' size problem, if their keys and values exceed what the apiserver takes. */
export function annotationSizeProblem(annotations: Record<string, string>): Problem | undefined {
  let chars = 0;
  for (const [key, value] of Object.entries(annotations)) chars += key.length + value.length;
  // A UTF-16 unit is at most 3 UTF-8 bytes: most rows never need the exact count.
  if (chars * 3 <= ANNOTATIONS_MAX_BYTES) return undefined;
  let bytes = 0;
  for (const [key, value] of Object.entries(annotations)) bytes += Buffer.byteLength(key) + Buffer.byteLength(value);
  if (bytes <= ANNOTATIONS_MAX_BYTES) return undefined;
  return { field: 'metadata.annotations', message: `annotations hold ${bytes} bytes, more than the ${ANNOTATIONS_MAX_BYTES} allowed` };
}
