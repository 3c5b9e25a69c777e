import type { RenderedObject } from '../render/index.ts';
import { identityOf } from './identity.ts';

/**
 * A rendered object bound for one cluster, with the row that made it. The
 * controller's snapshot keeps no body: what a member applies is rendered
 * again from the row (MemberSyncInput.rerender), so no step holds every
 * body of a DQR for all its clusters.
 */
export interface DesiredObject extends Omit<RenderedObject, 'body' | 'createBody'> {
  rowKey: string;
  body?: Record<string, unknown>;
  createBody?: Record<string, unknown>;
}

/** What a member holds under this DQR's owner label, from a metadata-only list. */
export interface LiveObject {
  apiVersion: string;
  kind: string;
  namespace: string | undefined;
  name: string;
  uid: string;
  /** As listed: a delete is sent only to the object as it was then. */
  resourceVersion: string | undefined;
  hash: string | undefined;
  rowKey: string | undefined;
}

export interface ClusterPlan {
  /** Not on the member yet: checked for foreign objects before applying. */
  create: DesiredObject[];
  /** On the member with another hash. */
  update: DesiredObject[];
  /** On the member with the same hash: nothing is sent. */
  unchanged: DesiredObject[];
  /** Owned, wanted by no row, and not made by a row that failed this time. */
  prune: LiveObject[];
  /** Owned and not rendered this time because its row failed: kept as it is. */
  kept: LiveObject[];
}

/**
 * Desired against actual on one member. Pure. Objects of failed rows are kept
 * (a row that fails to render is not a row that is gone), and nothing here
 * deletes: the caller prunes only after every step before it succeeded.
 */
export function planCluster(desired: readonly DesiredObject[], owned: readonly LiveObject[], failedRows: ReadonlySet<string>): ClusterPlan {
  const live = new Map(owned.map((o) => [identityOf(o), o]));
  const plan: ClusterPlan = { create: [], update: [], unchanged: [], prune: [], kept: [] };
  const wanted = new Set<string>();
  for (const object of desired) {
    const identity = identityOf(object);
    wanted.add(identity);
    const current = live.get(identity);
    if (current === undefined) plan.create.push(object);
    else if (current.hash === object.hash) plan.unchanged.push(object);
    else plan.update.push(object);
  }
  for (const [identity, object] of live) {
    if (wanted.has(identity)) continue;
    if (object.rowKey !== undefined && failedRows.has(object.rowKey)) plan.kept.push(object);
    else plan.prune.push(object);
  }
  return plan;
}
