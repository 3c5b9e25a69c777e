import { API_VERSION, CLUSTER_TARGET, CONDITION_TYPES, REASONS, parseClusterTarget, type ClusterTarget, type Condition, type RateLimit } from '../api/index.ts';
import { probeMember, type Member } from '../clusters/index.ts';
import { readSecretKeys, secretSource, type ReconcileResult } from '../runtime/index.ts';
import { unwatchedSecret } from '../sync/index.ts';
import { setConditions, transitioned, type ConditionUpdate } from '../status/index.ts';
import { splitKey, type HubContext, type HubObject } from './context.ts';
import { wakeMember } from './member-work.ts';

function resourcePath(namespace: string, name: string): string {
  return `/apis/${API_VERSION}/namespaces/${namespace}/${CLUSTER_TARGET.plural}/${name}`;
}

/**
 * A member's spec.rateLimit is a budget for the whole hub: sharded, each of
 * the ring's live shards gets an even part (qps exactly, burst and
 * concurrency rounded down, never below 1), whether or not its DQRs target
 * the member. The interval of the member queue's window (burst/qps) stays
 * the same, so the parts add up to the budget.
 */
export function rateLimitShare(limit: RateLimit, shards: number): RateLimit {
  return {
    qps: limit.qps / shards,
    burst: Math.max(1, Math.floor(limit.burst / shards)),
    concurrency: Math.max(1, Math.floor(limit.concurrency / shards)),
  };
}

/**
 * Connects a ClusterTarget: reads and vets its kubeconfig, builds (or keeps)
 * the member's client and queue, probes it, and reports Ready and Reachable.
 * Runs again every probe interval.
 */
export async function reconcileClusterTarget(ctx: HubContext, key: string, signal: AbortSignal): Promise<ReconcileResult> {
  const { namespace, name } = splitKey(key);
  const raw = ctx.informers.clusterTargets.get(name, namespace);
  if (raw === undefined) {
    if (ctx.members.get(key) !== undefined) ctx.metrics.forgetCluster(key);
    await ctx.statusWatches.forgetMember(key);
    await ctx.members.remove(key);
    ctx.queues.clusterTargets.forget(key);
    enqueueAllDqrs(ctx);
    return {};
  }
  const log = ctx.logger.child({ clusterTarget: key });
  const parsed = parseClusterTarget(raw);
  const generation = raw.metadata?.generation;
  const previous = (raw.status?.['conditions'] ?? []) as Condition[];
  const report = async (updates: ConditionUpdate[], extra: Record<string, unknown> = {}): Promise<void> => {
    // Sharded, every replica probes but one writes: the replicas' probes would take turns in status.
    if (ctx.shard !== undefined && !ctx.shard.leads()) return;
    const conditions = setConditions(previous, updates, generation, new Date());
    await ctx.writer.patchStatus(resourcePath(namespace, name), { observedGeneration: generation, conditions, ...extra });
    const ready = transitioned(previous, conditions, CONDITION_TYPES.ready);
    if (ready !== undefined) {
      await ctx.writer.event(
        { apiVersion: API_VERSION, kind: CLUSTER_TARGET.kind, namespace, name, uid: raw.metadata?.uid },
        ready.status === 'True' ? 'Normal' : 'Warning',
        ready.reason,
        ready.message,
      );
    }
  };
  const notReady = async (reason: string, message: string, reachable: ConditionUpdate['status'] = 'Unknown'): Promise<ReconcileResult> => {
    await report([
      { type: CONDITION_TYPES.ready, status: 'False', reason, message },
      { type: CONDITION_TYPES.reachable, status: reachable, reason, message },
    ]);
    return { requeueAfterMs: ctx.options.probeIntervalMs };
  };

  if (!parsed.ok) {
    await ctx.members.remove(key);
    return notReady(REASONS.invalidSpec, parsed.errors.map((e) => `${e.path}: ${e.message}`).join('; '));
  }
  const target = parsed.value;
  if (target.spec.paused) return notReady(REASONS.paused, 'spec.paused is true: no DatabaseQueryResource writes to this cluster');

  if (target.spec.inCluster && !inClusterAllowed(ctx, namespace)) {
    await ctx.statusWatches.forgetMember(key);
    await ctx.members.remove(key);
    enqueueAllDqrs(ctx);
    return notReady(
      REASONS.inClusterRefused,
      `spec.inCluster: true is refused in namespace ${namespace}: only the controller's namespace ${ctx.options.controllerNamespace} may hold inCluster targets unless --allow-in-cluster-namespaces names it`,
    );
  }

  let kubeconfig = ctx.hubKubeconfig;
  let scrubSource = 'hub-kubeconfig';
  if (!target.spec.inCluster) {
    const ref = target.spec.kubeconfigSecretRef;
    const secret = ctx.informers.secrets.get(ref.name, namespace);
    if (secret === undefined) return notReady(REASONS.secretNotFound, unwatchedSecret(namespace, ref.name, 'spec.kubeconfigSecretRef'));
    const read = readSecretKeys(secret, { kubeconfig: ref.key }, new Set(), ctx.scrubber);
    if (!read.ok) return notReady(REASONS.secretInvalid, `Secret ${namespace}/${ref.name} has no key ${ref.key} (spec.kubeconfigSecretRef.key)`);
    kubeconfig = read.values['kubeconfig'] ?? '';
    scrubSource = secretSource(namespace, ref.name);
  }
  const ensured = await ctx.members.ensure({
    key,
    name,
    labels: { ...target.metadata.labels },
    kubeconfig,
    scrubSource,
    trusted: target.spec.inCluster,
    rateLimit: ctx.shard === undefined ? target.spec.rateLimit : rateLimitShare(target.spec.rateLimit, ctx.shard.ringSize()),
  });
  if (!ensured.ok) {
    const ref = target.spec.kubeconfigSecretRef;
    const reason = ensured.problems.some((p) => p.kind === 'too-large')
      ? REASONS.kubeconfigTooLarge
      : ensured.problems.some((p) => p.kind === 'refused')
        ? REASONS.kubeconfigRefused
        : REASONS.kubeconfigInvalid;
    const source = ref === undefined ? 'the hub kubeconfig' : `Secret ${namespace}/${ref.name} key ${ref.key}`;
    const message = `kubeconfig in ${source}: ${ensured.problems.map((p) => (p.field === '' ? p.message : `${p.field}: ${p.message}`)).join('; ')}`;
    log.warn('kubeconfig refused', { reason, problems: ensured.problems });
    enqueueAllDqrs(ctx);
    return notReady(reason, message);
  }
  const duplicate = olderOverlap(ctx, raw, target, ensured.member);
  if (duplicate !== undefined) {
    await ctx.statusWatches.forgetMember(key);
    await ctx.members.remove(key);
    enqueueAllDqrs(ctx);
    return notReady(
      REASONS.duplicateCluster,
      `reaches the same apiserver (${duplicate.server}, same CA) as ClusterTarget ${duplicate.key}, registered earlier, with overlapping spec.allowedNamespaces: two targets would each claim the other's objects; use ${duplicate.key}, or give each target its own namespaces`,
    );
  }
  ctx.metrics.initialiseCluster(key);
  const probe = await probeMember(ensured.member, Math.min(ctx.options.requestTimeoutMs, 10_000), signal);
  // Stopping (leadership lost, or shutdown): the probe was cut short and proves nothing about the member.
  signal.throwIfAborted();
  ctx.metrics.memberReachable.labels(key).set(probe.reachable ? 1 : 0);
  const wasReachable = previous.find((c) => c.type === CONDITION_TYPES.reachable)?.status === 'True';
  await report(
    [
      { type: CONDITION_TYPES.reachable, status: probe.reachable ? 'True' : 'False', reason: probe.reachable ? REASONS.reachable : REASONS.unreachable, message: probe.message },
      {
        type: CONDITION_TYPES.ready,
        status: probe.ready ? 'True' : 'False',
        reason: probe.ready ? REASONS.reachable : REASONS.unreachable,
        message: probe.message,
      },
    ],
    {
      lastProbeTime: probe.probedAt.toISOString().replace(/\.\d{3}Z$/, 'Z'),
      // A shard knows only its own DQRs' objects: sharded, the count is left out rather than a part passed for the whole.
      ...(ctx.shard === undefined ? { managedObjects: [...ctx.managed.values()].reduce((n, perMember) => n + (perMember.get(key) ?? 0), 0) } : {}),
      ...(probe.serverVersion === undefined ? {} : { serverVersion: probe.serverVersion }),
    },
  );
  if (ensured.rebuilt) await ctx.statusWatches.forgetMember(key);
  if (ensured.rebuilt || probe.reachable !== wasReachable) {
    enqueueAllDqrs(ctx);
    if (probe.reachable) wakeMember(ctx, key);
  }
  return { requeueAfterMs: ctx.options.probeIntervalMs };
}

/** What identifies an apiserver to a client: its URL and the CA it is trusted by. */
function endpointOf(member: Member): { server: string; ca: string } | undefined {
  return member.api.kubeConfig.endpoint;
}

function namespacesOverlap(a: ClusterTarget, b: ClusterTarget): boolean {
  const [x, y] = [a.spec.allowedNamespaces, b.spec.allowedNamespaces];
  return x.length === 0 || y.length === 0 || x.some((n) => y.includes(n));
}

/** Registered earlier: by creation time, then by key, so two targets never both see the other as older. */
function registeredBefore(a: HubObject, b: HubObject): boolean {
  const time = (o: HubObject): number => new Date(String(o.metadata?.creationTimestamp ?? '')).getTime() || 0;
  const keyOf = (o: HubObject): string => `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
  return time(a) !== time(b) ? time(a) < time(b) : keyOf(a) < keyOf(b);
}

/**
 * Another connected ClusterTarget that reaches the same apiserver (same
 * server URL and CA) with namespaces overlapping this one's: the one
 * registered earlier keeps the cluster, this one is refused. A newer one
 * found here is asked to check again, so it learns it is the duplicate.
 * Targets reaching one apiserver under different URLs are not caught here;
 * ownership (per ClusterTarget) keeps them from pruning each other's objects.
 */
function olderOverlap(ctx: HubContext, raw: HubObject, target: ClusterTarget, member: Member): { key: string; server: string } | undefined {
  const mine = endpointOf(member);
  if (mine === undefined) return undefined;
  let older: { key: string; server: string } | undefined;
  for (const other of ctx.members.list()) {
    if (other.key === member.key) continue;
    const theirs = endpointOf(other);
    if (theirs?.server !== mine.server || theirs.ca !== mine.ca) continue;
    const { namespace, name } = splitKey(other.key);
    const otherRaw = ctx.informers.clusterTargets.get(name, namespace);
    const otherTarget = otherRaw === undefined ? undefined : parseClusterTarget(otherRaw);
    if (otherRaw === undefined || otherTarget?.ok !== true || otherTarget.value.spec.paused || !namespacesOverlap(target, otherTarget.value)) continue;
    if (registeredBefore(otherRaw, raw)) older ??= { key: other.key, server: mine.server };
    else ctx.queues.clusterTargets.add(other.key);
  }
  return older;
}

/**
 * An inCluster target writes with the controller's own rights on the hub:
 * whoever may create a ClusterTarget in a namespace would borrow them. Only the
 * controller's own namespace may, and those the operator names.
 */
function inClusterAllowed(ctx: HubContext, namespace: string): boolean {
  const allowed = ctx.options.allowInClusterNamespaces;
  return namespace === ctx.options.controllerNamespace || allowed.includes('*') || allowed.includes(namespace);
}

export function enqueueAllDqrs(ctx: HubContext): void {
  for (const dqr of ctx.informers.dqrs.list()) ctx.queues.dqrs.add(`${dqr.metadata?.namespace ?? ''}/${dqr.metadata?.name ?? ''}`);
}
