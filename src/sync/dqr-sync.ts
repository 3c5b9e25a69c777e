import type pg from 'pg';
import { type ClusterTarget, type DatabaseQueryResource } from '../api/index.ts';
import type { Member } from '../clusters/index.ts';
import { DbError, classifyDbError, readRows, writeLedger, type LedgerEntry } from '../db/index.ts';
import { RowKeyError, allowedKindKey, renderRow, rowKeyOf, type CompiledTemplate, type DqrOwner } from '../render/index.ts';
import type { Fence } from '../runtime/index.ts';
import { inBatchSpan, inSpan } from '../telemetry/index.ts';
import { identityOf } from './identity.ts';
import { listLeaving, pruneMember, syncMember, unmarkMember, type PlannedChange, type PruneResult, type ResourceKey, type RowFailure } from './member-sync.ts';
import type { DesiredObject, LiveObject } from './plan.ts';
import { decidePrune, type PendingPrune, type PruneDecision } from './prune-decision.ts';
import { rowClusters, targetKey } from './targets.ts';

export interface SyncCluster {
  target: ClusterTarget;
  member: Member;
}

export interface DqrSyncInput {
  dqr: DatabaseQueryResource;
  pool: pg.Pool;
  template: CompiledTemplate;
  owner: DqrOwner;
  clusters: readonly SyncCluster[];
  /** Keys of selected clusters with no connected member: rows may still name them. */
  unavailableClusters?: readonly string[];
  /** status.rowKeyColumns: the columns the row keys on existing objects are made of. */
  previousKeyColumns?: readonly string[] | undefined;
  /**
   * Clusters this DQR wrote to and no longer selects (connected, not paused):
   * spec.deletionPolicy applies there, Delete under the prune limit.
   */
  leaving?: readonly SyncCluster[];
  /** Kinds in use after the previous sync (from status). */
  previousResources: readonly ResourceKey[];
  /** status.pendingPrune.clusters of the prune still pending, if any: the limit's share stays of those counts. */
  pruneBaseline?: readonly { name: string; managed: number }[] | undefined;
  /** Reads the prune-confirmation annotation live; asked only when a prune is over the limit. */
  confirmation?: () => Promise<string | undefined>;
  /** Columns to remember of every row (what status write-back binds as `row.<column>`). */
  keepColumns?: readonly string[];
  /** Plan only: dry-run applies, no prunes; the changes come back in each cluster's outcome. */
  dryRun?: boolean;
  /** spec.ledger: record applied and pruned objects there; `everything` also records unchanged ones (a new generation, a new ledger). */
  ledger?: { table: string; everything: boolean };
  batchSize?: number;
  /** Asked before every apply, prune and ledger write for this DQR. */
  fence: Fence;
  signal: AbortSignal;
}

export interface ClusterOutcome {
  name: string;
  /** The ClusterTarget, namespace/name. */
  target: string;
  /** Objects listed as owned or applied there, as knownObject() names them. */
  known: string[];
  /** A cluster the DQR no longer selects, being cleaned up; kept in status while something is left. */
  leaving: boolean;
  applied: number;
  unchanged: number;
  failed: number;
  pruned: number;
  managed: number;
  /** Set when the cluster failed as a whole; nothing was pruned there. */
  lastError: string | undefined;
  /** Objects refused because someone else owns them. */
  conflicts: number;
  /** When this cluster's applies were done (epoch ms, the clock a change's time is read on). */
  appliedAt: number;
  /** Dry runs: creates and updates with the server's view of each. */
  planned: PlannedChange[];
  /** Owned objects no row wants (pruned unless blocked; in a dry run, what would be). */
  pruneCandidates: LiveObject[];
}

export interface DqrSyncOutcome {
  rowCount: number;
  clusters: ClusterOutcome[];
  failures: RowFailure[];
  /** Pruning wanted more than spec.pruneLimit allows and was not confirmed: nothing was pruned. */
  pruneBlocked: PendingPrune | undefined;
  /** The prune limit was weighed (pruning on, every row keyed): no pruneBlocked then means nothing is pending. */
  pruneEvaluated: boolean;
  /** A confirmed prune over the limit went through: the confirmation is used up. */
  confirmationUsed: boolean;
  resources: ResourceKey[];
  /** Reading, rendering and handing over the rows. */
  queryMs: number;
  keyColumns: string[];
  /** By row key: the `keepColumns` of each row read. */
  rowValues: Map<string, Record<string, unknown>>;
}

/** A cluster a row may render for: its name and labels are what templates see as `cluster`. */
export interface RenderCluster {
  /** The ClusterTarget's namespace/name: part of the owner stamped on what renders for it. */
  key: string;
  name: string;
  labels: Readonly<Record<string, string>>;
}

export interface RenderInput {
  dqr: DatabaseQueryResource;
  pool: pg.Pool;
  template: CompiledTemplate;
  owner: DqrOwner;
  clusters: readonly RenderCluster[];
  /** Keys of clusters the DQR selects but cannot write to now: a row may name them (it renders for none). */
  unavailableClusters?: readonly string[];
  /** The columns the row keys on existing objects are made of, when known. */
  previousKeyColumns?: readonly string[] | undefined;
  keepColumns?: readonly string[];
  batchSize?: number;
  signal: AbortSignal;
}

export interface RenderedRows {
  rowCount: number;
  /** By cluster key. */
  desired: Map<string, DesiredObject[]>;
  /** By cluster key: rows whose objects there must be kept as they are. */
  failedRows: Map<string, Set<string>>;
  failures: RowFailure[];
  /** A row without a usable key could own anything: no pruning anywhere this time. */
  unkeyedRows: number;
  queryMs: number;
  /** The columns the row key is made of (spec.rowKey, or the query's first column). */
  keyColumns: string[];
  /** The key columns changed since previousKeyColumns: each row's key under the former columns (none when it lacks them). */
  formerKeys: Map<string, string[]> | undefined;
  /** Failed rows whose objects cannot be told apart (their former key is unknown): no pruning anywhere this time. */
  unattributableRows: number;
  /** By row key: the `keepColumns` of each row read. */
  rowValues: Map<string, Record<string, unknown>>;
}

/**
 * The query's result does not have the shape the spec needs: no row can be
 * read, so nothing is applied or pruned. Terminal, like a SQL error: it
 * waits for a change of the query or the spec.
 */
export class QueryShapeError extends DbError {
  readonly field: string;

  constructor(field: string, message: string) {
    super('ROWCAST_QUERY_SHAPE', `${field}: ${message}`);
    this.name = 'QueryShapeError';
    this.field = field;
  }
}

/**
 * Reads every row (an error here throws: it never means "no rows") and
 * renders each for each cluster it targets. A row that fails is recorded
 * and the others go on; two rows rendering the same object on one cluster
 * both fail. Shared by the controller and `rowcast render`.
 */
export async function readAndRender(input: RenderInput): Promise<RenderedRows> {
  const started = performance.now();
  const { dqr, clusters } = input;
  const spec = dqr.spec;
  const namespace = dqr.metadata.namespace ?? 'default';
  const desired = new Map<string, DesiredObject[]>(clusters.map((c) => [c.key, []]));
  const failedRows = new Map<string, Set<string>>(clusters.map((c) => [c.key, new Set()]));
  const failures: RowFailure[] = [];
  let unkeyedRows = 0;
  const rowsPerKey = new Map<string, number>();
  let formerKeys: Map<string, string[]> | undefined;
  const rowValues = new Map<string, Record<string, unknown>>();
  const keep = input.keepColumns ?? [];
  let keyColumnsSeen: string[] = [...(spec.rowKey ?? [])];
  const metadata = { name: dqr.metadata.name, namespace, labels: { ...dqr.metadata.labels }, annotations: { ...dqr.metadata.annotations } };
  const rowClusterChoices = [...clusters, ...(input.unavailableClusters ?? []).map((key) => ({ key }))];
  const allowedKinds = spec.allowedKinds === undefined ? undefined : new Set(spec.allowedKinds.map(allowedKindKey));

  const summary = await readRows(
    input.pool,
    spec.query,
    (rows, columns) => {
      const keyColumns = spec.rowKey ?? columns.slice(0, 1);
      keyColumnsSeen = [...keyColumns];
      const previous = input.previousKeyColumns;
      if (previous !== undefined && previous.join('\u0000') !== keyColumns.join('\u0000')) formerKeys ??= new Map();
      const clusterColumn = spec.targets.rowClusterColumn;
      if (clusterColumn !== undefined && !columns.includes(clusterColumn)) {
        throw new QueryShapeError('spec.targets.rowClusterColumn', `the query returns no column ${JSON.stringify(clusterColumn)} (it returns ${columns.join(', ')})`);
      }
      for (const row of rows) {
        let rowKey: string;
        try {
          rowKey = rowKeyOf(row, keyColumns);
        } catch (error) {
          unkeyedRows++;
          const message = error instanceof RowKeyError ? error.message : String(error);
          failures.push({ rowKey: '', cluster: '', field: `spec.rowKey`, message, conflict: false });
          continue;
        }
        rowsPerKey.set(rowKey, (rowsPerKey.get(rowKey) ?? 0) + 1);
        if (formerKeys !== undefined && input.previousKeyColumns !== undefined) {
          const former = formerKeys.get(rowKey) ?? [];
          try {
            former.push(rowKeyOf(row, input.previousKeyColumns));
          } catch {
            // Without the former columns its old objects cannot be found: the list stays empty.
          }
          formerKeys.set(rowKey, former);
        }
        if (keep.length > 0) rowValues.set(rowKey, Object.fromEntries(keep.filter((c) => Object.hasOwn(row, c)).map((c) => [c, row[c]])));
        let wanted: Set<string> | undefined;
        if (spec.targets.rowClusterColumn !== undefined) {
          const picked = rowClusters(row[spec.targets.rowClusterColumn], rowClusterChoices, namespace);
          if (!(picked instanceof Set)) {
            for (const c of clusters) failedRows.get(c.key)?.add(rowKey);
            failures.push({ rowKey, cluster: '', field: `row.${spec.targets.rowClusterColumn}`, message: `spec.targets.rowClusterColumn ${picked.error}`, conflict: false });
            continue;
          }
          wanted = picked;
        }
        for (const cluster of clusters) {
          if (wanted !== undefined && !wanted.has(cluster.key)) continue;
          const rendered = renderRow(
            input.template,
            { row, metadata, cluster: { name: cluster.name, labels: { ...cluster.labels } } },
            { rowKey, defaultNamespace: namespace, owner: { ...input.owner, target: cluster.key }, ...(allowedKinds === undefined ? {} : { allowedKinds }) },
          );
          if (rendered.ok) {
            desired.get(cluster.key)?.push(...rendered.objects.map((o) => ({ ...o, rowKey })));
          } else {
            failedRows.get(cluster.key)?.add(rowKey);
            failures.push({ rowKey, cluster: cluster.key, field: rendered.failure.field, message: rendered.failure.message, conflict: false });
          }
        }
      }
    },
    { ...(input.batchSize === undefined ? {} : { batchSize: input.batchSize }), signal: input.signal },
  );
  const queryMs = performance.now() - started;

  // Two rows under one key: neither can be told from the other (whose object
  // is it, whose status goes back?), so both fail and keep what they have.
  const sharedKeys = new Set<string>();
  for (const [rowKey, count] of rowsPerKey) {
    if (count < 2) continue;
    sharedKeys.add(rowKey);
    for (const cluster of clusters) failedRows.get(cluster.key)?.add(rowKey);
    failures.push({
      rowKey,
      cluster: '',
      field: 'spec.rowKey',
      message: `${count} rows have this row key (columns ${keyColumnsSeen.join(', ')}); a row key must name one row`,
      conflict: false,
    });
  }
  if (sharedKeys.size > 0) {
    for (const cluster of clusters) desired.set(cluster.key, (desired.get(cluster.key) ?? []).filter((o) => !sharedKeys.has(o.rowKey)));
  }

  for (const cluster of clusters) {
    const objects = desired.get(cluster.key) ?? [];
    const rowsByIdentity = new Map<string, Set<string>>();
    for (const object of objects) {
      const identity = identityOf(object);
      const rows = rowsByIdentity.get(identity) ?? new Set<string>();
      rows.add(object.rowKey);
      rowsByIdentity.set(identity, rows);
    }
    const duplicated = new Set<string>();
    for (const [identity, rows] of rowsByIdentity) {
      if (rows.size < 2) continue;
      const keys = [...rows];
      for (const rowKey of keys) {
        duplicated.add(rowKey);
        failures.push({
          rowKey,
          cluster: cluster.key,
          field: 'metadata.name',
          message: `${identity.split('/').slice(1).join('/')} is rendered by more than one row (${keys.slice(0, 3).join(', ')})`,
          conflict: false,
        });
      }
    }
    if (duplicated.size > 0) {
      for (const rowKey of duplicated) failedRows.get(cluster.key)?.add(rowKey);
      desired.set(
        cluster.key,
        objects.filter((o) => !duplicated.has(o.rowKey)),
      );
    }
  }
  // Objects still carry the former keys: a failed row keeps them under those too.
  let unattributableRows = 0;
  if (formerKeys !== undefined) {
    for (const rows of failedRows.values()) {
      for (const rowKey of [...rows]) {
        const former = formerKeys.get(rowKey) ?? [];
        if (former.length === 0) unattributableRows++;
        for (const key of former) rows.add(key);
      }
    }
  }
  return { rowCount: summary.rowCount, desired, failedRows, failures, unkeyedRows, queryMs, keyColumns: keyColumnsSeen, formerKeys, unattributableRows, rowValues };
}

/**
 * One sync of one DQR: read and render every row, sync the members in
 * parallel, then prune where every step succeeded for that member and the
 * prune limit allows.
 */
export async function syncDqr(input: DqrSyncInput): Promise<DqrSyncOutcome> {
  const { dqr, clusters } = input;
  const spec = dqr.spec;
  const namespace = dqr.metadata.namespace ?? 'default';
  const { rowCount, desired, failedRows, failures, unkeyedRows, queryMs, keyColumns, formerKeys, unattributableRows, rowValues } = await inSpan('rowcast.read_and_render', {}, async (span) => {
    const rendered = await readAndRender({
      dqr,
      pool: input.pool,
      template: input.template,
      owner: input.owner,
      clusters: clusters.map(({ target }) => ({ key: targetKey(target), name: target.metadata.name, labels: target.metadata.labels })),
      ...(input.unavailableClusters === undefined ? {} : { unavailableClusters: input.unavailableClusters }),
      previousKeyColumns: input.previousKeyColumns,
      ...(input.keepColumns === undefined ? {} : { keepColumns: input.keepColumns }),
      ...(input.batchSize === undefined ? {} : { batchSize: input.batchSize }),
      signal: input.signal,
    });
    span.setAttributes({ 'rowcast.rows': rendered.rowCount, 'rowcast.failures': rendered.failures.length });
    return rendered;
  });

  const dqrKey = `${namespace}/${dqr.metadata.name}`;
  const fence = (): void => input.fence(dqrKey);
  const appliedAt = new Map<string, number>();
  const results = await Promise.all(
    clusters.map(({ target, member }) =>
      inSpan('rowcast.member_sync', { 'rowcast.cluster': member.key }, async (span) => {
        const result = await syncMember({
          member,
          target,
          desired: desired.get(targetKey(target)) ?? [],
          failedRows: failedRows.get(targetKey(target)) ?? new Set(),
          owner: { ...input.owner, target: targetKey(target) },
          fieldManager: `rowcast-${namespace}-${dqr.metadata.name}`.slice(0, 128),
          previousResources: input.previousResources,
          ...(formerKeys === undefined ? {} : { formerKeys }),
          fence,
          ...(input.dryRun === true ? { dryRun: true } : {}),
          signal: input.signal,
        });
        appliedAt.set(member.key, Date.now());
        span.setAttributes({ 'rowcast.applied': result.applied, 'rowcast.unchanged': result.unchanged, 'rowcast.failures': result.failures.length });
        if (result.error !== undefined) span.setAttribute('rowcast.error', result.error);
        return result;
      }),
    ),
  );
  for (const result of results) failures.push(...result.failures);

  // Clusters left behind: Delete makes their objects prune candidates (the limit weighs them like any), Orphan unmarks them.
  const leavingClusters = input.dryRun === true ? [] : (input.leaving ?? []);
  const leaving = await Promise.all(
    leavingClusters.map(async ({ target, member }) => {
      const result = await listLeaving({ member, target, owner: { ...input.owner, target: targetKey(target) }, previousResources: input.previousResources, signal: input.signal });
      if (spec.deletionPolicy === 'Orphan' && result.error === undefined) {
        const done = await unmarkMember(member, result.pruneCandidates, fence, input.signal);
        result.managed -= done.unmarked;
        result.pruneCandidates = [];
        if (done.error !== undefined) result.error = done.error;
      }
      return result;
    }),
  );
  const allResults = [...results, ...leaving];

  const decide = (confirmation: string | undefined): PruneDecision =>
    decidePrune({
      prune: spec.prune,
      limit: spec.pruneLimit,
      unkeyedRows: unkeyedRows + unattributableRows,
      clusters: allResults.map((r) => ({ cluster: r.cluster, managedBefore: r.managedBefore, candidates: r.pruneCandidates, failed: r.error !== undefined })),
      confirmation,
      baseline: input.pruneBaseline,
    });
  let decision = decide(undefined);
  // Read live, not from the informer's copy: a confirmation is honoured only while it is still there.
  if (decision.pending !== undefined && input.confirmation !== undefined) decision = decide(await input.confirmation());
  const pruned = new Map<string, PruneResult>();
  if (input.dryRun !== true) {
    await Promise.all(
      decision.prune.map(async ({ cluster: name, objects }) => {
        const cluster = [...clusters, ...leavingClusters].find((c) => c.member.key === name);
        if (cluster === undefined) return;
        const done = await inBatchSpan('rowcast.prune', { 'rowcast.cluster': name, 'rowcast.objects': objects.length }, () => pruneMember(cluster.member, objects, fence, input.signal));
        pruned.set(name, done);
      }),
    );
  }

  if (input.ledger !== undefined && input.dryRun !== true) {
    const ledger = input.ledger;
    const generation = dqr.metadata.generation ?? 0;
    await Promise.all(
      allResults.map(async (r) => {
        const appliedAt = new Date();
        const entry = (o: DesiredObject): LedgerEntry => ({
          dqr: dqrKey,
          cluster: r.cluster,
          kind: o.kind,
          namespace: o.namespace ?? '',
          name: o.name,
          rowKey: o.rowKey,
          apiVersion: o.apiVersion,
          hash: o.hash,
          generation,
          appliedAt,
        });
        const upserts = [...r.appliedObjects, ...(ledger.everything ? r.unchangedObjects : [])].map(entry);
        const deletes = (pruned.get(r.cluster)?.prunedObjects ?? []).map((o) => ({ dqr: dqrKey, cluster: r.cluster, kind: o.kind, namespace: o.namespace ?? '', name: o.name }));
        if (upserts.length === 0 && deletes.length === 0) return;
        fence();
        try {
          // One transaction per cluster per sync: a reader never sees half of it.
          await inSpan('rowcast.ledger', { 'rowcast.cluster': r.cluster, 'rowcast.objects': upserts.length + deletes.length }, () => writeLedger(input.pool, ledger.table, { upserts, deletes }));
        } catch (error) {
          r.error ??= `ledger ${ledger.table}: ${classifyDbError(error).message}`;
        }
      }),
    );
  }

  const failedCount = (cluster: string): number => new Set(failures.filter((f) => f.cluster === cluster || f.cluster === '').map((f) => f.rowKey)).size;
  return {
    rowCount,
    clusters: allResults.map((r) => {
      const p = pruned.get(r.cluster);
      return {
        name: r.cluster,
        target: r.target,
        known: r.known,
        leaving: leaving.includes(r),
        applied: r.applied + r.unchanged,
        unchanged: r.unchanged,
        failed: failedCount(r.cluster),
        pruned: p?.pruned ?? 0,
        managed: r.managed - (p?.pruned ?? 0),
        lastError: r.error ?? p?.error,
        conflicts: r.failures.filter((f) => f.conflict).length,
        planned: r.planned,
        pruneCandidates: [...(decision.evaluated && r.error === undefined ? r.pruneCandidates : [])],
        appliedAt: appliedAt.get(r.cluster) ?? Date.now(),
      };
    }),
    failures,
    pruneBlocked: decision.pending,
    pruneEvaluated: decision.evaluated,
    confirmationUsed: decision.confirmed,
    queryMs,
    keyColumns,
    rowValues,
    resources: [...new Set([...allResults.flatMap((r) => r.resources), ...(allResults.some((r) => r.error !== undefined) ? input.previousResources : [])])].sort(),
  };
}
