import { createHash } from 'node:crypto';
import { ANNOTATIONS, OWNER_LABEL } from '../api/index.ts';
import type { InformerEvent } from '../runtime/index.ts';

/** One managedFields entry, as the apiserver returns it. */
export interface ManagedFieldsEntry {
  manager?: string;
  operation?: string;
  subresource?: string;
  fieldsV1?: unknown;
}

/**
 * What Rowcast knows of one managed object from its own applies (or, after a
 * restart, from the first time the cache saw it): the field manager that
 * renders it, the resourceVersions its last applies returned, and a
 * fingerprint of the fields that manager owned then.
 */
export interface AppliedRecord {
  manager: string;
  /** The last few, newest last: a watch event may arrive after a later apply returned. */
  versions: readonly string[];
  /** undefined: the manager held no fields (its entry was gone). */
  fields: string | undefined;
}

/** A watch event on a managed object, with what Rowcast knows of it. */
export interface DriftObservation {
  event: InformerEvent;
  resourceVersion: string | undefined;
  labels: Readonly<Record<string, string>> | undefined;
  deleting: boolean;
  managedFields: readonly ManagedFieldsEntry[] | undefined;
  record: AppliedRecord | undefined;
  /** An apply of this object is in flight: its own event may come before its answer. */
  applying: boolean;
  /** Rowcast itself pruned or unmarked it (by uid). */
  removedByRowcast: boolean;
}

export type DriftReason = 'modified' | 'deleted' | 'unmarked';

export type DriftVerdict =
  | { drift: false; why: 'own-apply' | 'applying' | 'baseline' | 'unknown' | 'other-fields' | 'removed-by-rowcast'; record: AppliedRecord | undefined }
  | { drift: true; reason: DriftReason; managers: string[]; record: AppliedRecord | undefined };

/** How many of its own resourceVersions Rowcast remembers per object. */
const KEPT_VERSIONS = 3;

/** The manager's applied fields, fingerprinted: equal fingerprints, the same fields held. */
export function fieldsFingerprint(managedFields: readonly ManagedFieldsEntry[] | undefined, manager: string): string | undefined {
  const entry = managedFields?.find((e) => e.manager === manager && e.operation === 'Apply' && (e.subresource ?? '') === '');
  if (entry === undefined) return undefined;
  return createHash('sha256').update(JSON.stringify(entry.fieldsV1 ?? {})).digest('base64url').slice(0, 16);
}

/**
 * The manager that applied Rowcast's hash annotation: every apply renders
 * it, so that is the DQR's field manager, found without knowing the DQR.
 */
export function renderingManager(managedFields: readonly ManagedFieldsEntry[] | undefined): string | undefined {
  for (const entry of managedFields ?? []) {
    if (entry.operation !== 'Apply' || (entry.subresource ?? '') !== '') continue;
    const annotations = ((entry.fieldsV1 as Record<string, unknown> | undefined)?.['f:metadata'] as Record<string, unknown> | undefined)?.['f:annotations'] as Record<string, unknown> | undefined;
    if (annotations !== undefined && `f:${ANNOTATIONS.hash}` in annotations && entry.manager !== undefined) return entry.manager;
  }
  return undefined;
}

/** The record after one of Rowcast's applies returned this object. */
export function recordApply(previous: AppliedRecord | undefined, manager: string, applied: { resourceVersion?: string | undefined; managedFields?: readonly ManagedFieldsEntry[] | undefined }): AppliedRecord {
  const versions = previous?.manager === manager ? [...previous.versions] : [];
  if (applied.resourceVersion !== undefined && !versions.includes(applied.resourceVersion)) versions.push(applied.resourceVersion);
  return { manager, versions: versions.slice(-KEPT_VERSIONS), fields: fieldsFingerprint(applied.managedFields, manager) };
}

/** Managers other than Rowcast's that hold fields of the object (what a report names). */
function otherManagers(managedFields: readonly ManagedFieldsEntry[] | undefined, manager: string): string[] {
  return [...new Set((managedFields ?? []).map((e) => e.manager ?? '').filter((m) => m !== '' && m !== manager))].sort();
}

/**
 * Whether a watch event on a managed object is drift: a change Rowcast's own
 * applies did not make, to fields it renders, or the loss of the object.
 *
 * - An update or add carrying a resourceVersion one of Rowcast's applies
 *   returned is its own; so is any event while an apply of the object is in
 *   flight (its event can come before its answer).
 * - Otherwise an update is drift when the fields Rowcast's manager holds
 *   changed since its last apply: another manager took some (an update, or
 *   a forced apply, takes a field from its applier; an apply of the same
 *   value shares it, and is no drift). A change to fields Rowcast does not
 *   render leaves its manager's fields as they were.
 * - An object seen for the first time (after a restart, or a relist) sets
 *   the baseline: it is never drift by itself.
 * - A delete is drift unless Rowcast pruned or unmarked it; one whose owner
 *   label is gone but the object is not being deleted is `unmarked` (it left
 *   the label selector: someone removed Rowcast's marks).
 *
 * Whether the object is still wanted (a delete of one no row renders any
 * more is no loss) is for the caller to weigh against its rows.
 */
export function decideDrift(observation: DriftObservation): DriftVerdict {
  const { event, record } = observation;
  if (event === 'delete') {
    if (observation.removedByRowcast) return { drift: false, why: 'removed-by-rowcast', record: undefined };
    const reason: DriftReason = !observation.deleting && observation.labels?.[OWNER_LABEL] === undefined ? 'unmarked' : 'deleted';
    return { drift: true, reason, managers: otherManagers(observation.managedFields, record?.manager ?? ''), record: undefined };
  }
  if (observation.applying) return { drift: false, why: 'applying', record };
  if (record === undefined) {
    const manager = renderingManager(observation.managedFields);
    if (manager === undefined) return { drift: false, why: 'unknown', record: undefined };
    return { drift: false, why: 'baseline', record: { manager, versions: observation.resourceVersion === undefined ? [] : [observation.resourceVersion], fields: fieldsFingerprint(observation.managedFields, manager) } };
  }
  if (observation.resourceVersion !== undefined && record.versions.includes(observation.resourceVersion)) return { drift: false, why: 'own-apply', record };
  const fields = fieldsFingerprint(observation.managedFields, record.manager);
  if (fields === record.fields) return { drift: false, why: 'other-fields', record };
  // Reported once: the record now holds what the fields are, until an apply puts them back.
  return { drift: true, reason: 'modified', managers: otherManagers(observation.managedFields, record.manager), record: { ...record, fields } };
}
