import { conditionsSchema, countSchema, generationSchema, namespaceListSchema, nameSchema, PATTERNS } from './common-schemas.ts';
import { API_VERSION, CLUSTER_TARGET, CONDITION_TYPES, RATE_LIMIT_DEFAULTS } from './constants.ts';
import { parseEnvelope, type Condition, type ObjectMeta } from './meta.ts';
import type { IntegerSchema, ObjectSchema } from './schema.ts';
import { validate, type ParseResult } from './validate.ts';

function rateField(description: string, fallback: number, maximum: number): IntegerSchema {
  return {
    type: 'integer',
    format: 'int32',
    description: `${description} 0 or absent means the default, ${fallback}; there is no "unlimited".`,
    minimum: 0,
    maximum,
  };
}

export const clusterTargetSpecSchema: ObjectSchema = {
  type: 'object',
  description: 'How to reach one member cluster and what may be written to it. Set kubeconfigSecretRef or inCluster: true, not both.',
  properties: {
    kubeconfigSecretRef: {
      type: 'object',
      description:
        "A Secret in this ClusterTarget's namespace holding the member's kubeconfig. Kubeconfigs that use exec or auth-provider plugins or file paths (--allow-exec-auth, --allow-kubeconfig-files), insecure-skip-tls-verify or plain http:// servers (--allow-insecure-kubeconfigs) are refused unless the controller was started with the flag that allows them. A kubeconfig over 256 KiB, nested deeper than 32 levels, or whose YAML aliases expand it past twice that size is refused (reason KubeconfigTooLarge).",
      required: ['name'],
      properties: {
        name: nameSchema('Name of the Secret.'),
        key: {
          type: 'string',
          description: 'Key of the Secret holding the kubeconfig. Default: kubeconfig.',
          maxLength: 253,
          pattern: PATTERNS.secretKey,
          default: 'kubeconfig',
        },
      },
    },
    inCluster: {
      type: 'boolean',
      description:
        "The member is the hub itself, reached with the controller's own service account. A privilege: needs a non-empty allowedNamespaces, and is refused (reason InClusterRefused) outside the controller's own namespace unless the controller runs with --allow-in-cluster-namespaces naming this one.",
    },
    rateLimit: {
      type: 'object',
      description:
        "This member's own request queue; other members never wait on it. A 429 from the member pauses the queue for its Retry-After. A budget for the whole hub: when the controller runs sharded (--sharding), each of its N live replicas uses qps/N, and burst and concurrency divided by N (rounded down, never below 1).",
      properties: {
        qps: rateField('Steady requests per second.', RATE_LIMIT_DEFAULTS.qps, 10000),
        burst: rateField('Requests allowed above qps in a burst.', RATE_LIMIT_DEFAULTS.burst, 10000),
        concurrency: rateField('Requests in flight at once.', RATE_LIMIT_DEFAULTS.concurrency, 256),
      },
    },
    allowedNamespaces: namespaceListSchema(
      'Member namespaces Rowcast may write to. Empty: all, and cluster-scoped objects too; when set, cluster-scoped objects are refused.',
      'A member namespace.',
      false,
    ),
    allowedSourceNamespaces: namespaceListSchema(
      'Hub namespaces, besides this ClusterTarget\'s own (always allowed), whose DatabaseQueryResources may target this cluster. "*" allows every namespace.',
      'A hub namespace, or "*".',
      true,
    ),
    paused: {
      type: 'boolean',
      description: 'Stop writing to this member; queued work waits and nothing is pruned.',
      default: false,
    },
  },
  rules: [
    {
      cel: '!(has(self.kubeconfigSecretRef) && has(self.inCluster) && self.inCluster)',
      message: 'kubeconfigSecretRef and inCluster: true are mutually exclusive',
      fieldPath: '.inCluster',
      reason: 'FieldValueForbidden',
      holds: (self) => !(self['kubeconfigSecretRef'] !== undefined && self['inCluster'] === true),
    },
    {
      cel: 'has(self.kubeconfigSecretRef) || (has(self.inCluster) && self.inCluster)',
      message: 'one of kubeconfigSecretRef or inCluster: true is required',
      fieldPath: '.kubeconfigSecretRef',
      reason: 'FieldValueRequired',
      holds: (self) => self['kubeconfigSecretRef'] !== undefined || self['inCluster'] === true,
    },
    {
      cel: '!(has(self.inCluster) && self.inCluster) || (has(self.allowedNamespaces) && size(self.allowedNamespaces) > 0)',
      message: "inCluster: true needs allowedNamespaces: the hub's own cluster is never writable everywhere",
      fieldPath: '.allowedNamespaces',
      reason: 'FieldValueRequired',
      holds: (self) => self['inCluster'] !== true || (Array.isArray(self['allowedNamespaces']) && self['allowedNamespaces'].length > 0),
    },
  ],
};

export const clusterTargetStatusSchema: ObjectSchema = {
  type: 'object',
  description: 'What the last probe of the member found.',
  properties: {
    observedGeneration: generationSchema('The metadata.generation the status describes.'),
    conditions: conditionsSchema([CONDITION_TYPES.ready, CONDITION_TYPES.reachable]),
    serverVersion: { type: 'string', description: "The member's Kubernetes version, e.g. v1.35.4.", maxLength: 64 },
    lastProbeTime: { type: 'string', format: 'date-time', description: 'When the member was last probed.' },
    managedObjects: countSchema('Objects Rowcast manages on this member, across all DQRs. Absent when the controller runs sharded (--sharding): no one replica knows every DQR\'s objects; each DQR\'s status.clusters has its own.'),
  },
};

export interface SecretKeyRef {
  readonly name: string;
  readonly key: string;
}

export interface RateLimit {
  readonly qps: number;
  readonly burst: number;
  readonly concurrency: number;
}

/** The spec with defaults applied; 0 rate limits resolved to their defaults. */
export type ClusterTargetSpec = {
  readonly rateLimit: RateLimit;
  /** Empty: every namespace and cluster-scoped objects. */
  readonly allowedNamespaces: readonly string[];
  /** Besides the ClusterTarget's own namespace, which is always allowed; "*": all. */
  readonly allowedSourceNamespaces: readonly string[];
  readonly paused: boolean;
} & (
  | { readonly inCluster: true; readonly kubeconfigSecretRef: undefined }
  | { readonly inCluster: false; readonly kubeconfigSecretRef: SecretKeyRef }
);

export interface ClusterTarget {
  readonly apiVersion: typeof API_VERSION;
  readonly kind: typeof CLUSTER_TARGET.kind;
  readonly metadata: ObjectMeta;
  readonly spec: ClusterTargetSpec;
}

export interface ClusterTargetStatus {
  readonly observedGeneration?: number;
  readonly conditions?: readonly Condition[];
  readonly serverVersion?: string;
  readonly lastProbeTime?: string;
  readonly managedObjects?: number;
}

/** May a DQR in `namespace` (on the hub) target this cluster? */
export function acceptsSourceNamespace(target: ClusterTarget, namespace: string): boolean {
  const allowed = target.spec.allowedSourceNamespaces;
  return namespace === target.metadata.namespace || allowed.includes('*') || allowed.includes(namespace);
}

/** May Rowcast write an object in `namespace` (undefined: cluster-scoped) on this member? */
export function allowsMemberNamespace(target: ClusterTarget, namespace: string | undefined): boolean {
  const allowed = target.spec.allowedNamespaces;
  if (allowed.length === 0) return true;
  return namespace !== undefined && allowed.includes(namespace);
}

interface ValidSpec {
  kubeconfigSecretRef?: SecretKeyRef;
  inCluster?: boolean;
  rateLimit?: { qps?: number; burst?: number; concurrency?: number };
  allowedNamespaces?: string[];
  allowedSourceNamespaces?: string[];
  paused: boolean;
}

function orDefault(value: number | undefined, fallback: number): number {
  return value === undefined || value === 0 ? fallback : value;
}

function toSpec(raw: ValidSpec): ClusterTargetSpec {
  const common = {
    rateLimit: {
      qps: orDefault(raw.rateLimit?.qps, RATE_LIMIT_DEFAULTS.qps),
      burst: orDefault(raw.rateLimit?.burst, RATE_LIMIT_DEFAULTS.burst),
      concurrency: orDefault(raw.rateLimit?.concurrency, RATE_LIMIT_DEFAULTS.concurrency),
    },
    allowedNamespaces: raw.allowedNamespaces ?? [],
    allowedSourceNamespaces: raw.allowedSourceNamespaces ?? [],
    paused: raw.paused,
  };
  return raw.kubeconfigSecretRef === undefined
    ? { ...common, inCluster: true, kubeconfigSecretRef: undefined }
    : { ...common, inCluster: false, kubeconfigSecretRef: raw.kubeconfigSecretRef };
}

/**
 * Validates a ClusterTarget as the apiserver would (schema and CEL rules),
 * plus unknown fields, and returns it defaulted, or every error found.
 */
export function parseClusterTarget(obj: unknown): ParseResult<ClusterTarget> {
  const envelope = parseEnvelope(obj, CLUSTER_TARGET.kind);
  const spec = validate(clusterTargetSpecSchema, envelope.spec, 'spec');
  const errors = [...envelope.errors, ...spec.errors];
  if (errors.length > 0 || envelope.metadata === undefined) return { ok: false, errors };
  return {
    ok: true,
    value: { apiVersion: API_VERSION, kind: CLUSTER_TARGET.kind, metadata: envelope.metadata, spec: toSpec(spec.value as ValidSpec) },
  };
}
