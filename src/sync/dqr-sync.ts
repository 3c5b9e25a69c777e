import { createHash } from 'node:crypto';
import type pg from 'pg';
import { allowedPrunes, type ClusterTarget, type DatabaseQueryResource, type PruneLimit } from '../api/index.ts';
import type { Member } from '../clusters/index.ts';
import { DbError, classifyDbError, readRows, writeLedger, type LedgerEntry } from '../db/index.ts';
import { RowKeyError, allowedKindKey, renderRow, rowKeyOf, type CompiledTemplate, type DqrOwner, type RenderedObject } from '../render/index.ts';
import type { Fence } from '../runtime/index.ts';
import { inBatchSpan, inSpan } from '../telemetry/index.ts';
import { identityOf } from './identity.ts';
import { listLeaving, pruneMember, syncMember, unmarkMember, type MemberSyncResult, type PlannedChange, type PruneResult, type ResourceKey, type RowFailure } from './member-sync.ts';
import type { DesiredObject, LiveObject } from './plan.ts';
import { combinePending, decidePrune, type PendingPrune, type PruneDecision } from './prune-decision.ts';
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
  /** What each cluster managed as last known: a count limit's DQR-wide share. */
  managedBefore?: readonly number[];
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
  /** Identities of drifted objects applied again (heal). */
  healed: string[];
  /** Identities of every object applied this time (created, updated or healed). */
  written: string[];
  /** Of a full re-check, the objects that were not as rendered (their apply changed them). */
  corrected: string[];
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
  /** The rendering the members have now: taken again, not redone, when nothing it was made from changed. */
  previous?: RenderedRows | undefined;
  /**
   * Keep each object's body (rowcast render and plan print them). The
   * controller does not: it keeps the rows, and a member renders again the
   * ones it applies (RenderedRows.rerender).
   */
  keepBodies?: boolean;
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
  /** A hash of what every cluster's rendering was made from: the rows, template, DQR metadata and owner. */
  renderKey: string;
  /** By cluster key: its name and labels as rendered (templates read them as `cluster`). */
  clusterKeys: Map<string, string>;
  /** A row's objects for one cluster, rendered again from the row as read (bodies included). */
  rerender: (rowKey: string, clusterKey: string) => readonly RenderedObject[] | undefined;
}

/** A desired object without its bodies: what the controller's snapshot keeps of each. */
function withoutBodies(object: RenderedObject, rowKey: string): DesiredObject {
  const { apiVersion, kind, name, namespace, namespaceDefaulted, hash, document, ignoredPointers } = object;
  return { apiVersion, kind, name, namespace, namespaceDefaulted, hash, document, rowKey, ...(ignoredPointers === undefined ? {} : { ignoredPointers }) };
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
  const ignoreFields = new Map<string, string[]>();
  for (const entry of spec.ignoreFields) {
    const key = allowedKindKey(entry.kind);
    ignoreFields.set(key, [...(ignoreFields.get(key) ?? []), ...entry.jsonPointers]);
  }

  // Rows are read whole before anything renders: a result equal to the last one, for the same DQR and
  // clusters, renders to the same objects, so the last rendering is taken again. Rendering every object
  // for every member at each poll cost CPU at rest, and one poll during a long first sync held a second
  // full rendering (100 members of 1,000 rows: 160 MiB).
  const batches: { rows: Record<string, unknown>[]; columns: string[] }[] = [];
  const rowsHash = createHash('sha256');
  const summary = await readRows(
    input.pool,
    spec.query,
    (rows, columns) => {
      batches.push({ rows, columns });
      rowsHash.update(JSON.stringify(columns));
      for (const row of rows) rowsHash.update(`\u0000${JSON.stringify(row, (_key, value: unknown) => (typeof value === 'bigint' ? `${value}n` : value))}`);
    },
    { ...(input.batchSize === undefined ? {} : { batchSize: input.batchSize }), signal: input.signal },
  );
  const keepBodies = input.keepBodies !== false;
  const rowsByKey = new Map<string, Record<string, unknown>>();
  const renderFor = (row: Record<string, unknown>, rowKey: string, cluster: RenderCluster): ReturnType<typeof renderRow> =>
    renderRow(
      input.template,
      { row, metadata, cluster: { name: cluster.name, labels: { ...cluster.labels } } },
      { rowKey, defaultNamespace: namespace, owner: { ...input.owner, target: cluster.key }, ...(allowedKinds === undefined ? {} : { allowedKinds }), ...(ignoreFields.size === 0 ? {} : { ignoreFields }) },
    );
  const clustersByKey = new Map(clusters.map((c) => [c.key, c]));
  const rerender = (rowKey: string, clusterKey: string): readonly RenderedObject[] | undefined => {
    const row = rowsByKey.get(rowKey);
    const cluster = clustersByKey.get(clusterKey);
    if (row === undefined || cluster === undefined) return undefined;
    const rendered = renderFor(row, rowKey, cluster);
    return rendered.ok ? rendered.objects : undefined;
  };

  // What every cluster's rendering is made from; the former key columns only matter when they differ.
  const keyColumnsNow = spec.rowKey ?? batches[0]?.columns.slice(0, 1) ?? [];
  const formerColumns = input.previousKeyColumns !== undefined && input.previousKeyColumns.join('\u0000') !== keyColumnsNow.join('\u0000') ? input.previousKeyColumns : null;
  const renderKey = createHash('sha256')
    .update(
      JSON.stringify([
        rowsHash.digest('base64url'),
        input.template.source,
        dqr.metadata.uid,
        dqr.metadata.generation,
        metadata,
        // A row that names its clusters picks among all of them: any change of the set renders every cluster.
        spec.targets.rowClusterColumn === undefined ? [] : rowClusterChoices.map((c) => c.key),
        formerColumns,
        keep,
        input.owner,
      ]),
    )
    .digest('base64url');
  const clusterKeys = new Map(clusters.map((c) => [c.key, JSON.stringify([c.name, c.labels])]));
  // Per cluster: one that joins the DQR renders alone, the others' objects are taken as they were.
  const reused = new Set<string>();
  const previous = input.template.readsClock || input.previous?.renderKey !== renderKey ? undefined : input.previous;
  if (previous !== undefined) {
    for (const [key, clusterKey] of clusterKeys) if (previous.clusterKeys.get(key) === clusterKey && previous.desired.has(key)) reused.add(key);
    if (reused.size === clusters.length && previous.desired.size === clusters.length) return { ...previous, queryMs: performance.now() - started };
    // While the key columns change, failed rows hold their former keys too: counted again, they would be unattributable.
    if (formerColumns !== null) reused.clear();
    for (const key of reused) {
      desired.set(key, previous.desired.get(key) ?? []);
      failedRows.set(key, new Set(previous.failedRows.get(key)));
      failures.push(...previous.failures.filter((f) => f.cluster === key));
    }
  }
  const rendering = clusters.filter((c) => !reused.has(c.key));

  // Each batch is let go of once rendered.
  for (let batch = batches.shift(); batch !== undefined; batch = batches.shift()) {
    const { rows, columns } = batch;
    const keyColumns = spec.rowKey ?? columns.slice(0, 1);
    keyColumnsSeen = [...keyColumns];
    if (formerColumns !== null) formerKeys ??= new Map();
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
      if (!keepBodies) rowsByKey.set(rowKey, row);
      for (const cluster of rendering) {
        if (wanted !== undefined && !wanted.has(cluster.key)) continue;
        const rendered = renderFor(row, rowKey, cluster);
        if (rendered.ok) {
          const objects = desired.get(cluster.key);
          for (const o of rendered.objects) {
            if (keepBodies) objects?.push({ ...o, rowKey });
            else objects?.push(withoutBodies(o, rowKey));
          }
        } else {
          failedRows.get(cluster.key)?.add(rowKey);
          failures.push({ rowKey, cluster: cluster.key, field: rendered.failure.field, message: rendered.failure.message, conflict: false });
        }
      }
    }
  }
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
    for (const cluster of rendering) desired.set(cluster.key, (desired.get(cluster.key) ?? []).filter((o) => !sharedKeys.has(o.rowKey)));
  }

  for (const cluster of rendering) {
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
  return { rowCount: summary.rowCount, desired, failedRows, failures, unkeyedRows, queryMs, keyColumns: keyColumnsSeen, formerKeys, unattributableRows, rowValues, renderKey, clusterKeys, rerender };
}

/** What the clusters of one snapshot may still prune together (a count limit bounds the DQR, not each cluster). */
export interface PruneBudget {
  allowed: number;
  managed: number;
}

export interface ClusterSyncInput {
  dqr: DatabaseQueryResource;
  rendered: RenderedRows;
  cluster: SyncCluster;
  /** A cluster the DQR wrote to and no longer selects: spec.deletionPolicy applies there. */
  leaving: boolean;
  owner: DqrOwner;
  previousResources: readonly ResourceKey[];
  /** What this cluster managed when the pending prune was first blocked, if one is pending there. */
  pruneBaseline?: number | undefined;
  /** Whether a person confirmed the pending prune of this id (read live); asked only when this cluster's prune is over the limit. */
  confirms?: (id: string) => Promise<boolean>;
  /** Shared by the clusters of one snapshot; taken from as this cluster prunes. */
  budget?: PruneBudget;
  /** Identities of owned objects that drifted there: applied again with force (driftPolicy Heal). */
  heal?: ReadonlySet<string>;
  /** Apply every owned object there again with force: the periodic re-check (--resync-period). */
  healAll?: boolean;
  dryRun?: boolean;
  ledger?: { table: string; everything: boolean; pool: pg.Pool };
  fence: Fence;
  signal: AbortSignal;
}

export interface ClusterSyncOutcome {
  cluster: ClusterOutcome;
  /** This cluster's own failures (applies refused, conflicts); the rows' render failures stay in RenderedRows. */
  failures: RowFailure[];
  pruneBlocked: PendingPrune | undefined;
  pruneEvaluated: boolean;
  confirmationUsed: boolean;
  /** Kinds in use there (the previous ones too when the cluster failed: they are listed again next time). */
  resources: ResourceKey[];
}

/**
 * One cluster of one DQR, on its own: apply what the rendered rows want there
 * (or, on a cluster the DQR left, list what it still owns), decide its prune
 * under the limit, prune, record it in the ledger. A slow or failing cluster
 * holds back only itself.
 */
export async function syncCluster(input: ClusterSyncInput): Promise<ClusterSyncOutcome> {
  const { dqr, rendered, cluster } = input;
  const spec = dqr.spec;
  const key = targetKey(cluster.target);
  const owner = { ...input.owner, target: key };
  const dqrKey = `${dqr.metadata.namespace ?? 'default'}/${dqr.metadata.name}`;
  const fence = (): void => input.fence(dqrKey);
  let result: MemberSyncResult;
  if (input.leaving) {
    result = await listLeaving({ member: cluster.member, target: cluster.target, owner, previousResources: input.previousResources, signal: input.signal });
    if (spec.deletionPolicy === 'Orphan' && result.error === undefined && input.dryRun !== true) {
      const done = await unmarkMember(cluster.member, result.pruneCandidates, fence, input.signal);
      result.managed -= done.unmarked;
      result.pruneCandidates = [];
      if (done.error !== undefined) result.error = done.error;
    }
  } else {
    result = await syncMember({
      member: cluster.member,
      target: cluster.target,
      desired: rendered.desired.get(key) ?? [],
      failedRows: rendered.failedRows.get(key) ?? new Set(),
      owner,
      fieldManager: `rowcast-${dqr.metadata.namespace ?? 'default'}-${dqr.metadata.name}`.slice(0, 128),
      previousResources: input.previousResources,
      rerender: (rowKey) => rendered.rerender(rowKey, key),
      ...(rendered.formerKeys === undefined ? {} : { formerKeys: rendered.formerKeys }),
      ...(input.heal === undefined ? {} : { heal: input.heal }),
      ...(input.healAll === true ? { healAll: true } : {}),
      fence,
      ...(input.dryRun === true ? { dryRun: true } : {}),
      signal: input.signal,
    });
  }
  const appliedAt = Date.now();

  const decide = (confirmation: string | undefined): PruneDecision =>
    decidePrune({
      prune: spec.prune,
      limit: spec.pruneLimit,
      unkeyedRows: rendered.unkeyedRows + rendered.unattributableRows,
      clusters: [{ cluster: result.cluster, managedBefore: result.managedBefore, candidates: result.pruneCandidates, failed: result.error !== undefined }],
      confirmation,
      baseline: input.pruneBaseline === undefined ? undefined : [{ name: result.cluster, managed: input.pruneBaseline }],
      allowance: input.budget,
    });
  let decision = decide(undefined);
  if (decision.pending !== undefined) {
    const id = decision.pending.id;
    // Read live, not from the informer's copy: a confirmation is honoured only while it is still there.
    if (input.confirms !== undefined && (await input.confirms(id))) decision = decide(id);
  }
  // Taken before the first await: clusters deciding meanwhile see what this one is about to prune.
  const taking = decision.prune.reduce((n, p) => n + p.objects.length, 0);
  if (input.budget !== undefined) input.budget.allowed = Math.max(0, input.budget.allowed - taking);
  let pruned: PruneResult | undefined;
  if (input.dryRun !== true && taking > 0) {
    pruned = await inBatchSpan('rowcast.prune', { 'rowcast.cluster': result.cluster, 'rowcast.objects': taking }, () =>
      pruneMember(
        cluster.member,
        decision.prune.flatMap((p) => p.objects),
        fence,
        input.signal,
      ),
    );
  }

  if (input.ledger !== undefined && input.dryRun !== true) {
    const ledger = input.ledger;
    const generation = dqr.metadata.generation ?? 0;
    const at = new Date();
    const entry = (o: DesiredObject): LedgerEntry => ({
      dqr: dqrKey,
      cluster: result.cluster,
      kind: o.kind,
      namespace: o.namespace ?? '',
      name: o.name,
      rowKey: o.rowKey,
      apiVersion: o.apiVersion,
      hash: o.hash,
      generation,
      appliedAt: at,
    });
    const upserts = [...result.appliedObjects, ...(ledger.everything ? result.unchangedObjects : [])].map(entry);
    const deletes = (pruned?.prunedObjects ?? []).map((o) => ({ dqr: dqrKey, cluster: result.cluster, kind: o.kind, namespace: o.namespace ?? '', name: o.name }));
    if (upserts.length > 0 || deletes.length > 0) {
      fence();
      try {
        // One transaction per cluster per sync: a reader never sees half of it.
        await inSpan('rowcast.ledger', { 'rowcast.cluster': result.cluster, 'rowcast.objects': upserts.length + deletes.length }, () => writeLedger(ledger.pool, ledger.table, { upserts, deletes }));
      } catch (error) {
        result.error ??= `ledger ${ledger.table}: ${classifyDbError(error).message}`;
      }
    }
  }

  const failures = [...rendered.failures, ...result.failures];
  const failed = new Set(failures.filter((f) => f.cluster === result.cluster || f.cluster === '').map((f) => f.rowKey)).size;
  return {
    cluster: {
      name: result.cluster,
      target: result.target,
      known: result.known,
      leaving: input.leaving,
      applied: result.applied + result.unchanged,
      unchanged: result.unchanged,
      failed,
      pruned: pruned?.pruned ?? 0,
      managed: result.managed - (pruned?.pruned ?? 0),
      lastError: result.error ?? pruned?.error,
      conflicts: result.failures.filter((f) => f.conflict).length,
      healed: result.healed.map((o) => identityOf(o)),
      written: [...result.appliedObjects, ...result.healed].map((o) => identityOf(o)),
      corrected: result.corrected.map((o) => identityOf(o)),
      planned: result.planned,
      pruneCandidates: [...(decision.evaluated && result.error === undefined ? result.pruneCandidates : [])],
      appliedAt,
    },
    failures: result.failures,
    pruneBlocked: decision.pending,
    pruneEvaluated: decision.evaluated,
    confirmationUsed: decision.confirmed,
    resources: [...new Set([...result.resources, ...(result.error !== undefined ? input.previousResources : [])])],
  };
}

/** The DQR as a whole from its rows and each cluster's own outcome: what status and `rowcast plan` report. */
export function combineOutcomes(rendered: RenderedRows, clusters: readonly ClusterSyncOutcome[], pruneOn: boolean): DqrSyncOutcome {
  return {
    rowCount: rendered.rowCount,
    clusters: clusters.map((c) => c.cluster),
    failures: [...rendered.failures, ...clusters.flatMap((c) => c.failures)],
    pruneBlocked: combinePending(clusters.flatMap((c) => (c.pruneBlocked === undefined ? [] : [c.pruneBlocked]))),
    pruneEvaluated: pruneOn && rendered.unkeyedRows + rendered.unattributableRows === 0 && clusters.every((c) => c.pruneEvaluated),
    confirmationUsed: clusters.some((c) => c.confirmationUsed),
    queryMs: rendered.queryMs,
    keyColumns: rendered.keyColumns,
    rowValues: rendered.rowValues,
    resources: [...new Set(clusters.flatMap((c) => c.resources))].sort(),
  };
}

/**
 * One whole pass over a DQR: read and render every row, then each cluster on
 * its own. The controller runs the clusters as separate work items instead
 * (hub/member-work.ts); `rowcast plan` runs this as a dry run.
 */
export async function syncDqr(input: DqrSyncInput): Promise<DqrSyncOutcome> {
  const { dqr, clusters } = input;
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
  const budget = pruneBudget(dqr.spec.pruneLimit, input.managedBefore ?? []);
  // Read once, and only when a prune is over the limit somewhere.
  let read: Promise<string | undefined> | undefined;
  const ask = input.confirmation;
  const confirms = ask === undefined ? undefined : (id: string): Promise<boolean> => (read ??= ask()).then((c) => c === id);
  const outcomes = await Promise.all(
    [...clusters.map((c) => ({ cluster: c, leaving: false })), ...(input.leaving ?? []).map((c) => ({ cluster: c, leaving: true }))].map(({ cluster, leaving }) =>
      inSpan('rowcast.member_sync', { 'rowcast.cluster': targetKey(cluster.target) }, () => syncCluster({
        dqr,
        rendered,
        cluster,
        leaving,
        owner: input.owner,
        previousResources: input.previousResources,
        pruneBaseline: input.pruneBaseline?.find((b) => b.name === targetKey(cluster.target))?.managed,
        ...(confirms === undefined ? {} : { confirms }),
        ...(budget === undefined ? {} : { budget }),
        ...(input.dryRun === true ? { dryRun: true } : {}),
        ...(input.ledger === undefined ? {} : { ledger: { ...input.ledger, pool: input.pool } }),
        fence: input.fence,
        signal: input.signal,
      })),
    ),
  );
  return combineOutcomes(rendered, outcomes, dqr.spec.prune);
}

/**
 * The DQR-wide share of a round of per-cluster prunes, from what each cluster
 * managed before it (as last known). A percentage limit is already met by
 * every cluster keeping to its own share; a count limit is not.
 */
export function pruneBudget(limit: PruneLimit, managedBefore: readonly number[]): PruneBudget | undefined {
  if (limit.kind !== 'count') return undefined;
  const managed = managedBefore.reduce((n, m) => n + m, 0);
  return { allowed: allowedPrunes(limit, managed), managed };
}
