import { setTimeout as sleep } from 'node:timers/promises';
import type { KubernetesObject } from '@kubernetes/client-node';
import { ANNOTATIONS, OWNER_LABEL, parseDatabaseQueryResource } from '../api/index.ts';
import { MemberApi, type ApiResource, type Member } from '../clusters/index.ts';
import { bindParams, compileStatusTemplate, updateLedgerStatus, type CompiledStatement } from '../db/index.ts';
import { SupervisedInformer, backoffDelay, type BackoffPolicy } from '../runtime/index.ts';
import { inRootSpan, type StatusWatchCount } from '../telemetry/index.ts';
import { knownObject } from '../sync/index.ts';
import type { HubContext, StatusWatchRegistry } from './context.ts';

interface Watched extends KubernetesObject {
  status?: unknown;
}

/** A row key annotation back into the row's key columns, for `{{param row.<column>}}`. */
function keyRow(rowKey: string, columns: readonly string[]): Record<string, unknown> {
  if (columns.length === 1 && columns[0] !== undefined) return { [columns[0]]: rowKey };
  try {
    const values = JSON.parse(rowKey) as unknown;
    if (Array.isArray(values)) return Object.fromEntries(columns.map((c, i): [string, unknown] => [c, values[i]]));
  } catch {
    // not a composite key
  }
  return {};
}

const DISCOVERY_BACKOFF: BackoffPolicy = { baseMs: 1000, maxMs: 30_000 };

function objectKeyOf(member: Member, kind: string, object: Watched): string {
  return `${member.key}/${kind}/${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
}

/**
 * Watches the status of what Rowcast manages: one label-selected informer per
 * member and kind in use (for any DQR with a statusUpdateQueryTemplate or a
 * ledger), supervised like the hub's. A status change runs the DQR's
 * write-back (values only as bind parameters, only when they changed, rate
 * limited per database) and updates the ledger row. Failures never block
 * applies: they are counted and shown on the DQR's Ready condition.
 */
export class StatusWatches implements StatusWatchRegistry {
  private readonly ctx: HubContext;
  private readonly informers = new Map<string, { informer: SupervisedInformer<Watched>; member: Member; apiVersion: string; kind: string }>();
  /** The compiled statusUpdateQueryTemplate of each DQR key, with the uid/generation it was compiled for. */
  private readonly statements = new Map<string, { id: string; statement: CompiledStatement }>();
  /** Key columns of each DQR's rows, learned from its last query. */
  readonly keyColumns = new Map<string, string[]>();
  readonly rows = new Map<string, ReadonlyMap<string, Record<string, unknown>>>();
  /** The last write-back failure per DQR key, shown in its status until one succeeds. */
  readonly failures = new Map<string, string>();
  /**
   * Per DQR key and member key, the objects its last sync applied or listed
   * as its own there (knownObject: uid and identity). Only their status is
   * written back: anyone may put Rowcast's label and annotations on an
   * object of their own, but not the uid of an object Rowcast applied.
   */
  private readonly known = new Map<string, Map<string, Set<string>>>();

  /**
   * A sync's objects on one member; a partial one (the member failed) only
   * adds to what was known. An object the sync created may have changed its
   * status before the sync got here (a member's controller sets it within
   * milliseconds); that event was passed over as not yet Rowcast's, so the
   * watched copy of each newly known object is handed over now.
   */
  recordKnown(dqrKey: string, memberKey: string, objects: readonly string[], complete: boolean): void {
    const perMember = this.known.get(dqrKey) ?? new Map<string, Set<string>>();
    this.known.set(dqrKey, perMember);
    const before = perMember.get(memberKey);
    const known = new Set([...(complete ? [] : (before ?? [])), ...objects]);
    perMember.set(memberKey, known);
    const added = before === undefined ? known : new Set([...known].filter((identity) => !before.has(identity)));
    if (added.size === 0) return;
    for (const watch of this.informers.values()) {
      if (watch.member.key !== memberKey) continue;
      for (const object of watch.informer.list()) {
        if (object.status === undefined || !added.has(this.identityOf(watch.apiVersion, watch.kind, object))) continue;
        this.changed(watch.member, watch.apiVersion, watch.kind, object);
      }
    }
  }

  private identityOf(apiVersion: string, kind: string, object: Watched): string {
    return knownObject(object.metadata?.uid ?? '', { apiVersion, kind, namespace: object.metadata?.namespace, name: object.metadata?.name ?? '' });
  }

  /** A DQR that is gone takes everything remembered for it along. */
  forgetDqr(dqrKey: string): void {
    this.known.delete(dqrKey);
    this.keyColumns.delete(dqrKey);
    this.rows.delete(dqrKey);
    this.failures.delete(dqrKey);
    this.statements.delete(dqrKey);
    for (const key of [...this.lastWrite.keys()]) if (key.startsWith(`${dqrKey}|`)) this.forgetWrite(key);
    for (const key of [...this.heldBack.keys()]) if (key.startsWith(`${dqrKey}|`)) this.forgetWrite(key);
    this.ctx.writeBacks.forgetPrefix(`${dqrKey}|`);
  }

  /** An object that is gone: its rate-limit slot, any held-back write and its last written statement. */
  private forgetWrite(writeKey: string): void {
    this.lastWrite.delete(writeKey);
    const timer = this.heldBack.get(writeKey);
    if (timer !== undefined) clearTimeout(timer);
    this.heldBack.delete(writeKey);
    this.ctx.writeBacks.forget(writeKey);
  }

  constructor(ctx: HubContext) {
    this.ctx = ctx;
  }

  /**
   * Bumped when a member is forgotten: an ensure that was waiting on its
   * discovery meanwhile must not start an informer nothing would stop.
   */
  private readonly memberEpochs = new Map<string, number>();
  private stopped = false;

  /**
   * Watches a kind on a member: in each of `namespaces` (the ClusterTarget's
   * allowedNamespaces, which may be all its credentials reach), else
   * cluster-wide.
   */
  async ensure(member: Member, apiVersion: string, kind: string, namespaces: readonly string[] = []): Promise<void> {
    const keyOf = (namespace: string | undefined): string => `${member.key}|${apiVersion}|${kind}|${namespace ?? ''}`;
    const wanted = namespaces.length > 0 ? namespaces : [undefined];
    if (this.stopped || wanted.every((ns) => this.informers.has(keyOf(ns)))) return;
    const epoch = this.memberEpochs.get(member.key) ?? 0;
    const current = (): boolean => !this.hasStopped() && (this.memberEpochs.get(member.key) ?? 0) === epoch;
    // Retried here: nothing else would ask again while the DQR's rows stay the same, and a status
    // change on a member nobody watches is never written back.
    let resource: ApiResource | undefined;
    for (let failures = 1; ; failures++) {
      try {
        resource = await member.queue.run(() => member.api.resourceFor(apiVersion, kind));
        break;
      } catch (error) {
        if (!current()) return;
        const retryAfterMs = backoffDelay(DISCOVERY_BACKOFF, failures);
        this.ctx.logger.warn('status watch not started; retrying', { cluster: member.key, kind, retryAfterMs, error });
        await sleep(retryAfterMs, undefined, { ref: false });
      }
      if (!current()) return;
    }
    // The hub stopped or the member went while discovery ran (callers do not await this).
    if (!current() || resource === undefined) return;
    for (const namespace of resource.namespaced ? wanted : [undefined]) {
      const key = keyOf(namespace);
      if (this.informers.has(key)) continue;
      const path = MemberApi.collectionPath(apiVersion, resource, namespace);
      const informer = new SupervisedInformer<Watched>({
        name: `${member.key}/${resource.name}${namespace === undefined ? '' : `@${namespace}`}`,
        path,
        watch: (watchPath, query, signal) => member.api.watch(watchPath, query, signal),
        labelSelector: OWNER_LABEL,
        list: () => member.api.listCollection<Watched>(path, OWNER_LABEL),
        ...(member.api.held === undefined ? {} : { budget: member.api.held }),
        logger: this.ctx.logger,
        onEvent: (event, object) => {
          if (event === 'delete') this.deleted(member, kind, object);
          else this.changed(member, apiVersion, kind, object);
        },
      });
      this.informers.set(key, { informer, member, apiVersion, kind });
      informer.start();
    }
  }

  counts(): StatusWatchCount[] {
    return [...this.informers.values()].map(({ informer, member, apiVersion, kind }) => ({ cluster: member.key, kind: `${apiVersion}/${kind}`, objects: informer.size }));
  }

  /** A member going away takes its watches with it. */
  async forgetMember(memberKey: string): Promise<void> {
    this.memberEpochs.set(memberKey, (this.memberEpochs.get(memberKey) ?? 0) + 1);
    for (const [key, watch] of this.informers) {
      if (!key.startsWith(`${memberKey}|`)) continue;
      this.informers.delete(key);
      await watch.informer.stop();
    }
  }

  /** Read through a call: after an await, stopAll() may have run. */
  private hasStopped(): boolean {
    return this.stopped;
  }

  async stopAll(): Promise<void> {
    this.stopped = true;
    for (const timer of this.heldBack.values()) clearTimeout(timer);
    this.heldBack.clear();
    const all = [...this.informers.values()];
    this.informers.clear();
    await Promise.all(all.map((watch) => watch.informer.stop()));
  }

  /** Compiled once per DQR generation, the latest kept; an invalid template is reported by the DQR reconciler. */
  statementFor(dqrKey: string, uid: string, generation: number, template: string): CompiledStatement | undefined {
    const id = `${uid}/${generation}`;
    const cached = this.statements.get(dqrKey);
    if (cached?.id === id) return cached.statement;
    const compiled = compileStatusTemplate(template);
    if (!compiled.ok) return undefined;
    this.statements.set(dqrKey, { id, statement: compiled.statement });
    return compiled.statement;
  }

  private readonly lastWrite = new Map<string, number>();
  private readonly heldBack = new Map<string, NodeJS.Timeout>();

  /**
   * spec.statusUpdate.minInterval: a change within the interval waits, and
   * only the latest status of the object is written once it has passed.
   */
  private holdBack(writeKey: string, minIntervalMs: number, retry: () => void): boolean {
    if (minIntervalMs <= 0) return false;
    const now = Date.now();
    const last = this.lastWrite.get(writeKey) ?? 0;
    const pending = this.heldBack.get(writeKey);
    if (pending !== undefined) clearTimeout(pending);
    if (now - last >= minIntervalMs) {
      this.heldBack.delete(writeKey);
      this.lastWrite.set(writeKey, now);
      return false;
    }
    this.heldBack.set(
      writeKey,
      setTimeout(() => {
        this.heldBack.delete(writeKey);
        retry();
      }, last + minIntervalMs - now),
    );
    return true;
  }

  /** The DQR key an object names in its owner-ref, if this hub's. */
  private ownerOf(object: Watched): string | undefined {
    let owner: { hub?: string; namespace?: string; name?: string };
    try {
      owner = JSON.parse(object.metadata?.annotations?.[ANNOTATIONS.ownerRef] ?? '{}') as typeof owner;
    } catch {
      return undefined;
    }
    if (owner.hub !== this.ctx.hubId || owner.namespace === undefined || owner.name === undefined) return undefined;
    return `${owner.namespace}/${owner.name}`;
  }

  private deleted(member: Member, kind: string, object: Watched): void {
    const dqrKey = this.ownerOf(object);
    if (dqrKey !== undefined) this.forgetWrite(`${dqrKey}|${objectKeyOf(member, kind, object)}`);
  }

  /**
   * Runs inside the informer's callback: hands work to promises and returns
   * at once. Each statement gets a trace of its own: the callback runs in
   * whatever context started the watch or its timer, often another DQR's
   * sync, whose trace it would otherwise join.
   */
  private changed(member: Member, apiVersion: string, kind: string, object: Watched): void {
    if (object.status === undefined) return;
    const annotations = object.metadata?.annotations ?? {};
    const dqrKey = this.ownerOf(object);
    if (dqrKey === undefined) return;
    if (this.known.get(dqrKey)?.get(member.key)?.has(this.identityOf(apiVersion, kind, object)) !== true) return;
    // A replica that lost the Lease writes nothing back: the new leader's own watches see the same change.
    try {
      this.ctx.fence(dqrKey);
    } catch {
      return;
    }
    const slash = dqrKey.indexOf('/');
    const raw = this.ctx.informers.dqrs.get(dqrKey.slice(slash + 1), dqrKey.slice(0, slash));
    const lease = this.ctx.leases.get(dqrKey);
    if (raw === undefined || lease === undefined) return;
    const parsed = parseDatabaseQueryResource(raw);
    if (!parsed.ok) return;
    const spec = parsed.value.spec;
    const objectKey = objectKeyOf(member, kind, object);
    const rowKey = annotations[ANNOTATIONS.rowKey] ?? '';
    if (spec.ledger !== undefined) {
      const ledgerKey = { dqr: dqrKey, cluster: member.key, kind, namespace: object.metadata?.namespace ?? '', name: object.metadata?.name ?? '' };
      const table = spec.ledger.table;
      inRootSpan('rowcast.ledger_status', { 'rowcast.dqr': dqrKey, 'rowcast.cluster': member.key, 'rowcast.kind': kind }, () =>
        updateLedgerStatus(lease.pool, table, ledgerKey, object.status),
      ).catch((error: unknown) => {
        this.ctx.logger.warn('ledger status not recorded', { dqr: dqrKey, cluster: member.key, error });
      });
    }
    if (spec.statusUpdateQueryTemplate === undefined) return;
    if (spec.statusUpdate.kinds !== undefined && !spec.statusUpdate.kinds.includes(kind)) return;
    const writeKey = `${dqrKey}|${objectKey}`;
    if (this.holdBack(writeKey, spec.statusUpdate.minIntervalMs, () => this.changed(member, apiVersion, kind, object))) return;
    const statement = this.statementFor(dqrKey, raw.metadata?.uid ?? '', raw.metadata?.generation ?? 0, spec.statusUpdateQueryTemplate);
    if (statement === undefined) return;
    const values = bindParams(statement, {
      // Items of a LIST carry no kind or apiVersion; the statement may bind them.
      resource: { ...object, apiVersion, kind },
      // After a restart, until the first sync, only the key columns are known.
      row: this.rows.get(dqrKey)?.get(rowKey) ?? keyRow(rowKey, this.keyColumns.get(dqrKey) ?? spec.rowKey ?? []),
      cluster: { name: member.name, labels: { ...member.labels } },
    });
    inRootSpan('rowcast.write_back', { 'rowcast.dqr': dqrKey, 'rowcast.cluster': member.key, 'rowcast.kind': kind }, async (span) => {
      const result = await this.ctx.writeBacks.enqueue(lease.pool, lease.key, writeKey, statement, values);
      span.setAttribute('rowcast.result', result);
      return result;
    }).then(
      (result) => {
        this.ctx.metrics.writeBacks.labels(result).inc();
        if (result === 'written' && this.failures.delete(dqrKey)) this.ctx.queues.dqrs.add(dqrKey);
      },
      (error: unknown) => {
        this.ctx.metrics.writeBacks.labels('failed').inc();
        const message = `status write-back for ${objectKey}: ${error instanceof Error ? this.ctx.scrubber.scrub(error.message) : 'failed'}`;
        const first = !this.failures.has(dqrKey);
        this.failures.set(dqrKey, message);
        this.ctx.logger.warn('status write-back failed', { dqr: dqrKey, object: objectKey, error });
        if (first) this.ctx.queues.dqrs.add(dqrKey);
      },
    );
  }
}
