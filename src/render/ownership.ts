import { ANNOTATIONS, OWNER_LABEL } from '../api/index.ts';
import { canonicalJson, sha256Hex } from './canonical-json.ts';
import type { DqrOwner, OwnerIdentity } from './types.ts';

/**
 * The owner label's value: 32 hex characters (128 bits) of sha256 over hub id,
 * DQR namespace and name, and the ClusterTarget the object was rendered for.
 * A label value holds at most 63 characters, fewer than a namespace and name
 * together may need, so the full identity lives in the owner-ref annotation
 * and the label only has to be unique and stable.
 */
export function ownerLabelValue(owner: Pick<OwnerIdentity, 'hubId' | 'namespace' | 'name' | 'target'>): string {
  // A JSON array keeps ("a/b", "c") and ("a", "b/c") apart.
  return sha256Hex(canonicalJson([owner.hubId, owner.namespace, owner.name, owner.target])).slice(0, 32);
}

/** The rowcast.dev/owner-ref annotation: the owner in full. */
export function ownerRefValue(owner: OwnerIdentity): string {
  return JSON.stringify({ hub: owner.hubId, namespace: owner.namespace, name: owner.name, uid: owner.uid, target: owner.target });
}

/**
 * What versions before the ClusterTarget joined ownership stamped: the label
 * over hub id, namespace and name, the owner-ref without `target`. Only read,
 * never written: such objects are still this DQR's on whichever target lists
 * them, and the next apply stamps them anew.
 */
function legacyLabelValue(owner: Pick<DqrOwner, 'hubId' | 'namespace' | 'name'>): string {
  return sha256Hex(canonicalJson([owner.hubId, owner.namespace, owner.name])).slice(0, 32);
}

function legacyRefValue(owner: DqrOwner): string {
  return JSON.stringify({ hub: owner.hubId, namespace: owner.namespace, name: owner.name, uid: owner.uid });
}

export type Ownership = 'current' | 'legacy' | undefined;

export interface OwnerMatcher {
  /** Lists what the owner may hold on its target: its own stamp and the legacy one. */
  readonly selector: string;
  /**
   * Whether a listed object is the owner's: `current` (stamped for this
   * target), `legacy` (stamped by an earlier version: owned, and to be
   * stamped again), or undefined (another owner, or a label that collides
   * with a different owner-ref).
   */
  match(labels: Readonly<Record<string, string>> | undefined, annotations: Readonly<Record<string, string>> | undefined): Ownership;
}

/** The one rule of what an owner owns on one ClusterTarget. */
export function ownerMatcher(owner: OwnerIdentity): OwnerMatcher {
  const label = ownerLabelValue(owner);
  const ref = ownerRefValue(owner);
  const legacyLabel = legacyLabelValue(owner);
  const legacyRef = legacyRefValue(owner);
  return {
    selector: `${OWNER_LABEL} in (${label},${legacyLabel})`,
    match: (labels, annotations) => {
      const hasLabel = labels?.[OWNER_LABEL];
      const hasRef = annotations?.[ANNOTATIONS.ownerRef];
      if (hasLabel === label && hasRef === ref) return 'current';
      if (hasLabel === legacyLabel && hasRef === legacyRef) return 'legacy';
      return undefined;
    },
  };
}

export interface OwnerStamp {
  readonly label: string;
  readonly ref: string;
}

/** By owner and target: a DQR's rows render for each of its clusters in turn, so one entry would always miss. */
const stamps = new Map<string, OwnerStamp>();
const MAX_STAMPS = 4096;

/**
 * The owner's label and annotation values, shared by every object rendered
 * for the same owner and target (computed per object, they were 300 bytes
 * of each rendered object kept in a snapshot).
 */
export function ownerStamp(owner: OwnerIdentity): OwnerStamp {
  const key = JSON.stringify([owner.hubId, owner.namespace, owner.name, owner.uid, owner.target]);
  const known = stamps.get(key);
  if (known !== undefined) return known;
  const stamp = { label: ownerLabelValue(owner), ref: ownerRefValue(owner) };
  if (stamps.size >= MAX_STAMPS) stamps.clear();
  stamps.set(key, stamp);
  return stamp;
}

/** Prefix of every label and annotation key Rowcast sets; templates may not use it. */
export const RESERVED_KEY_PREFIX = OWNER_LABEL.slice(0, OWNER_LABEL.indexOf('/') + 1);

