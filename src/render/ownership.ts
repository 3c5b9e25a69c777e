import { OWNER_LABEL } from '../api/index.ts';
import { canonicalJson, sha256Hex } from './canonical-json.ts';
import type { OwnerIdentity } from './types.ts';

/**
 * The owner label's value: 32 hex characters (128 bits) of sha256 over hub id,
 * namespace and name. A label value holds at most 63 characters, fewer than a
 * namespace and name together may need, so the full identity lives in the
 * owner-ref annotation and the label only has to be unique and stable.
 */
export function ownerLabelValue(owner: Pick<OwnerIdentity, 'hubId' | 'namespace' | 'name'>): string {
  // A JSON array keeps ("a/b", "c") and ("a", "b/c") apart.
  return sha256Hex(canonicalJson([owner.hubId, owner.namespace, owner.name])).slice(0, 32);
}

/** The rowcast.dev/owner-ref annotation: the owner in full. */
export function ownerRefValue(owner: OwnerIdentity): string {
  return JSON.stringify({ hub: owner.hubId, namespace: owner.namespace, name: owner.name, uid: owner.uid });
}

export interface OwnerStamp {
  readonly label: string;
  readonly ref: string;
}

let last: { owner: OwnerIdentity; hubId: string; namespace: string; name: string; uid: string; stamp: OwnerStamp } | undefined;

/** The owner's label and annotation values, remembered for the next row of the same owner. */
export function ownerStamp(owner: OwnerIdentity): OwnerStamp {
  // Compare the fields, not only the object: a caller may reuse and mutate it.
  if (
    last?.owner === owner &&
    last.hubId === owner.hubId &&
    last.namespace === owner.namespace &&
    last.name === owner.name &&
    last.uid === owner.uid
  ) {
    return last.stamp;
  }
  const stamp = { label: ownerLabelValue(owner), ref: ownerRefValue(owner) };
  last = { owner, hubId: owner.hubId, namespace: owner.namespace, name: owner.name, uid: owner.uid, stamp };
  return stamp;
}

/** Prefix of every label and annotation key Rowcast sets; templates may not use it. */
export const RESERVED_KEY_PREFIX = OWNER_LABEL.slice(0, OWNER_LABEL.indexOf('/') + 1);

