import type { KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
import { ANNOTATIONS, OWNER_LABEL, parseDatabaseQueryResource } from '../api/index.ts';
import { MemberApi, type Member } from '../clusters/index.ts';
import { bindParams, compileStatusTemplate, updateLedgerStatus, type CompiledStatement } from '../db/index.ts';
import { SupervisedInformer } from '../runtime/index.ts';
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
  private readonly informers = new Map<string, SupervisedInformer<Watched>>();
  private readonly statements = new Map<string, CompiledStatement>();
  /** Key columns of each DQR's rows, learned from its last query. */
  readonly keyColumns = new Map<string, string[]>();
  /** The last write-back failure per DQR key, shown in its status until one succeeds. */
  readonly failures = new Map<string, string>();

  constructor(ctx: HubContext) {
    this.ctx = ctx;
  }

  async ensure(member: Member, apiVersion: string, kind: string): Promise<void> {
    const key = `${member.key}|${apiVersion}|${kind}`;
    if (this.informers.has(key)) return;
    const resource = await member.queue.run(() => member.api.resourceFor(apiVersion, kind));
    if (resource === undefined || this.informers.has(key)) return;
    const path = MemberApi.collectionPath(apiVersion, resource, undefined);
    const informer = new SupervisedInformer<Watched>({
      name: `${member.name}/${resource.name}`,
      kubeConfig: member.api.kubeConfig,
      path,
      labelSelector: OWNER_LABEL,
      list: () => member.api.request<KubernetesListObject<Watched>>('GET', path, { query: { labelSelector: OWNER_LABEL } }),
      logger: this.ctx.logger,
      onEvent: (event, object) => {
        if (event !== 'delete') this.changed(member, kind, object);
      },
    });
    this.informers.set(key, informer);
    informer.start();
  }

  /** A member going away takes its watches with it. */
  async forgetMember(memberKey: string): Promise<void> {
    for (const [key, informer] of this.informers) {
      if (!key.startsWith(`${memberKey}|`)) continue;
      this.informers.delete(key);
      await informer.stop();
    }
  }

  async stopAll(): Promise<void> {
    for (const timer of this.heldBack.values()) clearTimeout(timer);
    this.heldBack.clear();
    const all = [...this.informers.values()];
    this.informers.clear();
    await Promise.all(all.map((i) => i.stop()));
  }

  /** Compiled once per DQR generation; an invalid template is reported by the DQR reconciler. */
  statementFor(uid: string, generation: number, template: string): CompiledStatement | undefined {
    const key = `${uid}/${generation}`;
    let statement = this.statements.get(key);
    if (statement === undefined) {
      const compiled = compileStatusTemplate(template);
      if (!compiled.ok) return undefined;
      statement = compiled.statement;
      this.statements.set(key, statement);
    }
    return statement;
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

  /** Runs inside the informer's callback: hands work to promises and returns at once. */
  private changed(member: Member, kind: string, object: Watched): void {
    if (object.status === undefined) return;
    const annotations = object.metadata?.annotations ?? {};
    let owner: { hub?: string; namespace?: string; name?: string };
    try {
      owner = JSON.parse(annotations[ANNOTATIONS.ownerRef] ?? '{}') as typeof owner;
    } catch {
      return;
    }
    if (owner.hub !== this.ctx.hubId || owner.namespace === undefined || owner.name === undefined) return;
    const dqrKey = `${owner.namespace}/${owner.name}`;
    // A replica that lost the Lease writes nothing back: the new leader's own watches see the same change.
    try {
      this.ctx.fence(dqrKey);
    } catch {
      return;
    }
    const raw = this.ctx.informers.dqrs.get(owner.name, owner.namespace);
    const lease = this.ctx.leases.get(dqrKey);
    if (raw === undefined || lease === undefined) return;
    const parsed = parseDatabaseQueryResource(raw);
    if (!parsed.ok) return;
    const spec = parsed.value.spec;
    const objectKey = `${member.name}/${kind}/${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
    const rowKey = annotations[ANNOTATIONS.rowKey] ?? '';
    if (spec.ledger !== undefined) {
      const ledgerKey = { dqr: dqrKey, cluster: member.name, kind, namespace: object.metadata?.namespace ?? '', name: object.metadata?.name ?? '' };
      updateLedgerStatus(lease.pool, spec.ledger.table, ledgerKey, object.status).catch((error: unknown) => {
        this.ctx.logger.warn('ledger status not recorded', { dqr: dqrKey, cluster: member.name, error });
      });
    }
    if (spec.statusUpdateQueryTemplate === undefined) return;
    if (spec.statusUpdate.kinds !== undefined && !spec.statusUpdate.kinds.includes(kind)) return;
    const writeKey = `${dqrKey}|${objectKey}`;
    if (this.holdBack(writeKey, spec.statusUpdate.minIntervalMs, () => this.changed(member, kind, object))) return;
    const statement = this.statementFor(raw.metadata?.uid ?? dqrKey, raw.metadata?.generation ?? 0, spec.statusUpdateQueryTemplate);
    if (statement === undefined) return;
    const values = bindParams(statement, {
      resource: object,
      row: keyRow(rowKey, this.keyColumns.get(dqrKey) ?? spec.rowKey ?? []),
      cluster: { name: member.name, labels: { ...member.labels } },
    });
    this.ctx.writeBacks.enqueue(lease.pool, lease.key, writeKey, statement, values).then(
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
