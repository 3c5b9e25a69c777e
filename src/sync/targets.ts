import { acceptsSourceNamespace, byCodePoint, type ClusterTarget, type LabelSelector, type Targets } from '../api/index.ts';

export function matchesLabelSelector(selector: LabelSelector, labels: Readonly<Record<string, string>>): boolean {
  for (const [key, value] of Object.entries(selector.matchLabels)) if (labels[key] !== value) return false;
  for (const requirement of selector.matchExpressions) {
    const value = labels[requirement.key];
    switch (requirement.operator) {
      case 'In':
        if (value === undefined || !requirement.values.includes(value)) return false;
        break;
      case 'NotIn':
        if (value !== undefined && requirement.values.includes(value)) return false;
        break;
      case 'Exists':
        if (value === undefined) return false;
        break;
      case 'DoesNotExist':
        if (value !== undefined) return false;
        break;
    }
  }
  return true;
}

export interface TargetRefusal {
  cluster: string;
  reason: 'NotFound' | 'SourceNamespaceNotAllowed' | 'Paused';
  message: string;
}

export interface TargetSelection {
  /** ClusterTargets this DQR writes to, by key (namespace/name). */
  selected: ClusterTarget[];
  /** Named or matched targets it may not use, each with why: a condition, never a silent skip. */
  refused: TargetRefusal[];
}

/** A ClusterTarget's key, namespace/name: how members, ownership, metrics and the ledger name it. */
export function targetKey(target: ClusterTarget): string {
  return `${target.metadata.namespace ?? ''}/${target.metadata.name}`;
}

/**
 * How a DQR's status (clusters, failingRows, pendingPrune) its messages and
 * the CLI's output name a ClusterTarget: by name in the DQR's own namespace, else
 * namespace/name. Never ambiguous: names are unique per namespace and only
 * the other namespaces' carry a slash. Metrics and the ledger always use
 * namespace/name.
 */
export function statusClusterName(dqrNamespace: string, targetKey: string): string {
  return targetKey.startsWith(`${dqrNamespace}/`) ? targetKey.slice(dqrNamespace.length + 1) : targetKey;
}

/** The ClusterTarget key (namespace/name) a status name stands for: statusClusterName undone. */
export function targetKeyFromStatus(dqrNamespace: string, statusName: string): string {
  return statusName.includes('/') ? statusName : `${dqrNamespace}/${statusName}`;
}


/**
 * Which ClusterTargets a DQR selects: those named, those its selector matches,
 * or, when it only names a row column, every target it may use (each row then
 * picks among them). Tenancy: a target accepts DQRs from its own namespace and
 * from its allowedSourceNamespaces; one named but not accepting is refused
 * with a reason, one a selector matches but not accepting is not seen.
 */
export function selectTargets(dqrNamespace: string, targets: Targets, all: readonly ClusterTarget[]): TargetSelection {
  const byKey = new Map(all.map((t) => [targetKey(t), t]));
  const candidates = new Map<string, ClusterTarget>();
  const refused: TargetRefusal[] = [];
  for (const ref of targets.clusters) {
    const namespace = ref.namespace ?? dqrNamespace;
    const target = byKey.get(`${namespace}/${ref.name}`);
    if (target === undefined) {
      refused.push({ cluster: `${namespace}/${ref.name}`, reason: 'NotFound', message: `ClusterTarget ${namespace}/${ref.name} not found` });
    } else {
      candidates.set(targetKey(target), target);
    }
  }
  const everyUsable = targets.clusters.length === 0 && targets.clusterSelector === undefined;
  for (const target of all) {
    const matched = everyUsable || (targets.clusterSelector !== undefined && matchesLabelSelector(targets.clusterSelector, target.metadata.labels));
    // A selector reaches only targets that accept this namespace: another tenant's target is never named in this DQR's status.
    if (matched && acceptsSourceNamespace(target, dqrNamespace)) candidates.set(targetKey(target), target);
  }
  const selected: ClusterTarget[] = [];
  for (const target of candidates.values()) {
    if (!acceptsSourceNamespace(target, dqrNamespace)) {
      refused.push({
        cluster: targetKey(target),
        reason: 'SourceNamespaceNotAllowed',
        message: `ClusterTarget ${targetKey(target)} does not accept DatabaseQueryResources from namespace ${dqrNamespace} (spec.allowedSourceNamespaces)`,
      });
    } else if (target.spec.paused) {
      refused.push({ cluster: targetKey(target), reason: 'Paused', message: `ClusterTarget ${targetKey(target)} is paused` });
    } else {
      selected.push(target);
    }
  }
  selected.sort((a, b) => byCodePoint(targetKey(a), targetKey(b)));
  return { selected, refused };
}

/**
 * The clusters a row asks for through spec.targets.rowClusterColumn, as keys
 * of `clusters`: a reference (a name in the DQR's namespace, or
 * namespace/name), a comma-separated list of them, or an array. An empty
 * string or array names none, on purpose. Anything else that cannot be read
 * (NULL, another type, an array cast to text, a reference to no cluster of
 * this DQR) is an error: the row fails and keeps its objects, since reading
 * it as "no cluster" would prune them everywhere.
 */
export function rowClusters(value: unknown, clusters: readonly { key: string }[], dqrNamespace: string): Set<string> | { error: string } {
  if (value === null || value === undefined) return { error: 'is NULL; name the clusters, or an empty string or array for none' };
  let references: string[];
  if (typeof value === 'string') {
    if (/^\{.*\}$/s.test(value.trim())) return { error: `${JSON.stringify(value)} looks like an array cast to text; select the array itself or a comma-separated list` };
    references = value.split(',');
  } else if (Array.isArray(value)) {
    const wrong = value.findIndex((item) => typeof item !== 'string');
    if (wrong >= 0) return { error: `item ${wrong} is ${describeType(value[wrong])}, not a cluster reference` };
    references = value as string[];
  } else {
    return { error: `expected a cluster reference, a comma-separated list or an array of them, got ${describeType(value)}` };
  }
  const keys = new Set(clusters.map((c) => c.key));
  const picked = new Set<string>();
  for (const reference of references.map((r) => r.trim()).filter((r) => r !== '')) {
    const key = reference.includes('/') ? reference : keys.has(`${dqrNamespace}/${reference}`) ? `${dqrNamespace}/${reference}` : reference;
    if (!keys.has(key)) return { error: `names cluster ${JSON.stringify(reference)}, which is not one of this DQR's clusters (${[...keys].slice(0, 5).join(', ')})` };
    picked.add(key);
  }
  return picked;
}

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}
