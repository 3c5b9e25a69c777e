import {
  conditionsSchema,
  countSchema,
  durationSchema,
  generationSchema,
  labelSelectorSchema,
  nameSchema,
  PATTERNS,
} from './common-schemas.ts';
import { API_VERSION, CONDITION_TYPES, DATABASE_QUERY_RESOURCE, STATUS_LIMITS } from './constants.ts';
import { parseGoDuration } from './go-duration.ts';
import { parseEnvelope, toLabelSelector, type Condition, type LabelSelector, type LabelSelectorOperator, type ObjectMeta } from './meta.ts';
import type { ObjectSchema, StringSchema } from './schema.ts';
import { validate, type ParseResult } from './validate.ts';

const PERCENT = /^(100|[1-9]?[0-9])%$/u;

function secretKey(description: string, defaultKey: string): StringSchema {
  return {
    type: 'string',
    description: `${description} Default: ${defaultKey}.`,
    maxLength: 253,
    pattern: PATTERNS.secretKey,
    default: defaultKey,
  };
}

function sqlIdentifier(description: string): StringSchema {
  return {
    type: 'string',
    description: `${description} An unquoted SQL identifier; Rowcast quotes it as written, so use the name as PostgreSQL stores it (lower case unless it was created quoted).`,
    maxLength: 63,
    pattern: PATTERNS.sqlIdentifier,
  };
}

function qualifiedSqlIdentifier(description: string): StringSchema {
  return {
    ...sqlIdentifier(description),
    description: `${description} A table name, optionally schema-qualified (schema.table); each part is an unquoted SQL identifier that Rowcast quotes as written.`,
    maxLength: 127,
    pattern: PATTERNS.sqlQualifiedIdentifier,
  };
}

const clusterRef: StringSchema = {
  type: 'string',
  description:
    'A ClusterTarget: its name in this namespace, or namespace/name for one in another namespace that lists this namespace in spec.allowedSourceNamespaces.',
  maxLength: 317,
  pattern: `^(${PATTERNS.dnsLabel.slice(1, -1)}/)?${PATTERNS.dnsSubdomain.slice(1)}`,
};

export const databaseQueryResourceSpecSchema: ObjectSchema = {
  type: 'object',
  description: 'What to query, how to render each row, and where to apply the result.',
  required: ['database', 'query', 'template', 'targets'],
  properties: {
    database: {
      type: 'object',
      description: 'The database the query runs against.',
      required: ['connectionSecretRef'],
      properties: {
        type: {
          type: 'string',
          description: 'The database engine.',
          enum: ['postgres'],
          default: 'postgres',
        },
        connectionSecretRef: {
          type: 'object',
          description:
            "A Secret in the DQR's namespace holding the connection settings, one per key. A changed Secret (a rotated password) rebuilds the pool; managed objects are kept. The sslmode key is optional and defaults to prefer.",
          required: ['name'],
          properties: {
            name: nameSchema('Name of the Secret.'),
            hostKey: secretKey('Key holding the host name or address.', 'host'),
            portKey: secretKey('Key holding the port.', 'port'),
            userKey: secretKey('Key holding the user name.', 'username'),
            passwordKey: secretKey('Key holding the password.', 'password'),
            dbNameKey: secretKey('Key holding the database name.', 'dbname'),
            sslModeKey: secretKey('Key holding the libpq sslmode (prefer when the key is absent).', 'sslmode'),
          },
        },
        pool: {
          type: 'object',
          description: 'Connection pool settings.',
          default: {},
          properties: {
            max: {
              type: 'integer',
              format: 'int32',
              description: 'Most connections the pool opens.',
              minimum: 1,
              maximum: 100,
              default: 5,
            },
            idleTimeout: durationSchema({
              description: 'How long an unused connection stays open (Go duration, at least 1s).',
              default: '30s',
              minimum: '1s',
            }),
            statementTimeout: durationSchema({
              description:
                'statement_timeout for every statement Rowcast runs (Go duration, at least 1ms; "0" leaves it to the server). A hung query would otherwise hold the DQR forever.',
              default: '60s',
              minimum: '1ms',
              zeroAllowed: true,
            }),
          },
        },
      },
    },
    query: {
      type: 'string',
      description:
        'SQL run in a READ ONLY transaction. Several statements may be given, separated by semicolons; all but the last are setup (such as SET statement_timeout) and the last returns the rows. Rows are read in batches.',
      minLength: 1,
      maxLength: 131072,
    },
    rowKey: {
      type: 'array',
      description:
        'The columns that identify a row, in order; the key is stamped on every object made from the row. Default: the first column of the result.',
      minItems: 1,
      maxItems: 16,
      listType: 'atomic',
      items: { type: 'string', description: 'A column name as the query returns it.', minLength: 1, maxLength: 63 },
      rules: [
        {
          cel: 'self.all(c, self.exists_one(d, d == c))',
          message: 'column names must be unique',
          holds: (self) => new Set(self).size === self.length,
        },
      ],
    },
    pollInterval: durationSchema({
      description:
        'How often the query runs (Go duration, at least 1s). With change detection it is the safety net, not the main trigger.',
      default: '30s',
      minimum: '1s',
    }),
    changeDetection: {
      type: 'object',
      description: 'How Rowcast notices changes between polls.',
      default: {},
      properties: {
        mode: {
          type: 'string',
          description:
            'none: run the query every pollInterval. timestamp: run SELECT max(timestampColumn) FROM tableName first and skip the query while it is unchanged. notify: LISTEN on channel and sync (debounced) on every notification and after every reconnect; the poll still runs.',
          enum: ['none', 'timestamp', 'notify'],
          default: 'none',
        },
        tableName: qualifiedSqlIdentifier('The table watched in timestamp mode.'),
        timestampColumn: sqlIdentifier('The column of tableName whose maximum changes with every write, in timestamp mode.'),
        channel: sqlIdentifier('The channel to LISTEN on in notify mode.'),
      },
      rules: [
        {
          cel: "!has(self.mode) || self.mode != 'timestamp' || has(self.tableName)",
          message: 'tableName is required when mode is timestamp',
          fieldPath: '.tableName',
          reason: 'FieldValueRequired',
          holds: (self) => self['mode'] !== 'timestamp' || self['tableName'] !== undefined,
        },
        {
          cel: "!has(self.mode) || self.mode != 'timestamp' || has(self.timestampColumn)",
          message: 'timestampColumn is required when mode is timestamp',
          fieldPath: '.timestampColumn',
          reason: 'FieldValueRequired',
          holds: (self) => self['mode'] !== 'timestamp' || self['timestampColumn'] !== undefined,
        },
        {
          cel: "!has(self.mode) || self.mode != 'notify' || has(self.channel)",
          message: 'channel is required when mode is notify',
          fieldPath: '.channel',
          reason: 'FieldValueRequired',
          holds: (self) => self['mode'] !== 'notify' || self['channel'] !== undefined,
        },
      ],
    },
    template: {
      type: 'string',
      description:
        'Handlebars template producing YAML or JSON: one or more Kubernetes objects per row. Context: row (column name to value), metadata (this DQR\'s name, namespace, labels, annotations), cluster (the target\'s name and labels), so a row can render differently per cluster. Every {{expr}} is escaped for where it stands (inside quotes, unquoted, in a block scalar) so a row value stays one value and cannot add objects or fields; {{{expr}}} is raw (see Escaping in templates in docs/api.md). No HTML escaping; a missing field is an error, not an empty string.',
      minLength: 1,
      maxLength: 262144,
    },
    allowedKinds: {
      type: 'array',
      description:
        'The kinds a row may render, as group/Kind (apps/Deployment, rbac.authorization.k8s.io/Role), a core kind as Kind alone (ConfigMap). A rendered document of any other kind fails its row, whose objects are kept. Absent: the kinds the template names literally, each apiVersion and kind written out as keys of the same object; so a template that computes its kind or apiVersion must list what it may render.',
      minItems: 1,
      maxItems: 64,
      listType: 'set',
      items: {
        type: 'string',
        description: 'group/Kind, or Kind for the core group.',
        maxLength: 317,
        pattern: `^(${PATTERNS.dnsSubdomain.slice(1, -1)}/)?[A-Z][A-Za-z0-9]*$`,
      },
    },
    targets: {
      type: 'object',
      description:
        'The member clusters rows are applied to. At least one of clusters, clusterSelector or rowClusterColumn must be set; clusters and clusterSelector add up.',
      properties: {
        clusters: {
          type: 'array',
          description: 'ClusterTargets by name.',
          maxItems: 256,
          listType: 'set',
          items: clusterRef,
        },
        clusterSelector: labelSelectorSchema(
          'ClusterTargets by label, in this namespace and in any namespace whose ClusterTargets allow this one; {} selects them all.',
        ),
        rowClusterColumn: {
          type: 'string',
          description:
            'A column naming the clusters of its own row: one cluster reference as in clusters (a name in this namespace, or namespace/name), a comma-separated list of them, or an array of them; an empty string or array names none. When clusters or clusterSelector is also set, a row can only pick among the clusters they select. A value that cannot be read (NULL, another type, an array cast to text such as "{a,b}", a cluster this DQR does not select) fails the row, whose objects are kept everywhere; a query without this column fails as a whole (nothing is applied or pruned).',
          minLength: 1,
          maxLength: 63,
        },
      },
      rules: [
        {
          cel: '(has(self.clusters) && size(self.clusters) > 0) || has(self.clusterSelector) || has(self.rowClusterColumn)',
          message: 'must set at least one of clusters, clusterSelector or rowClusterColumn',
          holds: (self) =>
            (Array.isArray(self['clusters']) && self['clusters'].length > 0) ||
            self['clusterSelector'] !== undefined ||
            self['rowClusterColumn'] !== undefined,
        },
      ],
    },
    prune: {
      type: 'boolean',
      description: 'Delete member objects whose row is gone. Nothing is ever pruned after a failed query or sync.',
      default: true,
    },
    pruneLimit: {
      type: 'int-or-string',
      description:
        "The most of this DQR's objects one sync may prune: a percentage (\"50%\", rounded down, of the objects it managed before the sync on the clusters being pruned, and of each such cluster's own) or a count (10, across them and on each). A sync over the limit prunes nothing, publishes status.pendingPrune and waits for the rowcast.dev/confirm-prune annotation set to its id. 0 or \"0%\" makes every prune wait.",
      default: '50%',
      rules: [
        {
          cel: "type(self) == int ? self >= 0 : self.matches('^(100|[1-9]?[0-9])%$')",
          message: 'must be a count >= 0 or a percentage from 0% to 100%',
          holds: (self) => (typeof self === 'number' ? self >= 0 : PERCENT.test(self)),
        },
      ],
    },
    deletionPolicy: {
      type: 'string',
      description:
        'What happens to member objects when this DQR is deleted, and on a cluster it stops selecting (dropped from targets, labels no longer matching): Delete them (on a cluster left behind, as a prune under pruneLimit), or Orphan them (they stay, without Rowcast\'s label and annotations). A paused ClusterTarget is left untouched until it is unpaused or removed; status.clusters keeps listing a cluster while anything may be left there.',
      enum: ['Delete', 'Orphan'],
      default: 'Delete',
    },
    driftPolicy: {
      type: 'string',
      description:
        "What Rowcast does when a managed object on a member changes in a field Rowcast renders without Rowcast having changed it (someone ran kubectl edit, another controller wrote it), or is deleted while a row still wants it: Heal re-applies the rendered object within seconds, taking back the fields it renders (force), backing off per object (2s doubling to 5m) when another writer keeps changing it and saying so in the Drifted condition; Report only says so (Drifted condition, a Warning event, rowcast_drift_corrections_total{result=\"reported\"}) and writes nothing; Ignore does neither. An object Rowcast does not own is never touched.",
      enum: ['Heal', 'Report', 'Ignore'],
      default: 'Heal',
    },
    ignoreFields: {
      type: 'array',
      description:
        'Fields Rowcast leaves to others once an object exists (an autoscaler\'s spec.replicas): set on create as rendered; afterwards a change there is not drift, a change of the template there does not re-apply, and an update sends the value the member holds, so another writer keeps it.',
      maxItems: 32,
      items: {
        type: 'object',
        description: 'One kind and the fields of it Rowcast leaves to others.',
        required: ['kind', 'jsonPointers'],
        properties: {
          kind: {
            type: 'string',
            description: 'group/Kind (apps/Deployment), or Kind alone for the core group (ConfigMap), as in allowedKinds.',
            maxLength: 317,
            pattern: `^(${PATTERNS.dnsSubdomain.slice(1, -1)}/)?[A-Z][A-Za-z0-9]*$`,
          },
          jsonPointers: {
            type: 'array',
            description: 'RFC 6901 JSON pointers into the object (/spec/replicas; ~1 for a / inside a key, ~0 for ~). metadata, apiVersion and kind cannot be left to others.',
            minItems: 1,
            maxItems: 32,
            listType: 'set',
            items: { type: 'string', description: 'A JSON pointer.', maxLength: 1024, pattern: '^(/([^~/]|~[01])*)+$' },
            rules: [
              {
                cel: "self.all(p, !p.startsWith('/metadata') && p != '/apiVersion' && p != '/kind')",
                message: 'metadata, apiVersion and kind cannot be left to others',
                holds: (self) => Array.isArray(self) && self.every((p) => typeof p === 'string' && !p.startsWith('/metadata') && p !== '/apiVersion' && p !== '/kind'),
              },
            ],
          },
        },
      },
    },
    statusUpdateQueryTemplate: {
      type: 'string',
      description:
        'SQL run after a managed object\'s status changes on a member. A Handlebars template in which {{param EXPR}} becomes a bind parameter ($1, $2...): values never become SQL text. Context: resource (the object as seen on the member), row (the row it was made from), cluster (name and labels).',
      minLength: 1,
      maxLength: 65536,
    },
    statusUpdate: {
      type: 'object',
      description: 'Which managed objects run statusUpdateQueryTemplate, and how often at most.',
      properties: {
        kinds: {
          type: 'array',
          description: 'Kinds whose status is written back (e.g. Deployment); absent: every kind the template renders.',
          maxItems: 32,
          listType: 'set',
          items: { type: 'string', description: 'A kind, as in the rendered manifests.', maxLength: 63, pattern: '^[A-Z][A-Za-z0-9]*$' },
        },
        minInterval: durationSchema({
          description: 'Least time between two write-backs for one object (Go duration, at least 1s, or 0 for none); the latest status is written when it has passed.',
          default: '0s',
          minimum: '1s',
          zeroAllowed: true,
        }),
      },
    },
    ledger: {
      type: 'object',
      description:
        'A table in the same database where Rowcast keeps one row per managed object (row key, cluster, kind, namespace, name, hash, applied at, status, last error), inserted on create and deleted on prune.',
      required: ['table'],
      properties: {
        table: qualifiedSqlIdentifier('The ledger table.'),
      },
    },
  },
};

export const databaseQueryResourceStatusSchema: ObjectSchema = {
  type: 'object',
  description: 'What the controller last observed and did; counts only, the ledger holds the detail.',
  properties: {
    observedGeneration: generationSchema('The metadata.generation the status describes.'),
    conditions: conditionsSchema([CONDITION_TYPES.ready, CONDITION_TYPES.databaseConnected, CONDITION_TYPES.synced, CONDITION_TYPES.drifted]),
    rowCount: countSchema('Rows the last successful query returned.'),
    clusterCount: countSchema('Member clusters the targets select.'),
    managedResources: {
      type: 'array',
      description:
        'Kinds this DQR has objects of, as "apiVersion|kind"; the next sync lists them too, so objects of a kind no row renders any more are still pruned.',
      maxItems: STATUS_LIMITS.managedResources,
      listType: 'set',
      items: { type: 'string', description: 'apiVersion|kind', maxLength: 317 },
    },
    lastSyncTime: { type: 'string', format: 'date-time', description: 'When the last sync finished.' },
    clusters: {
      type: 'array',
      description: 'Per member cluster, what the last sync did.',
      maxItems: STATUS_LIMITS.clusters,
      listType: 'map',
      listMapKeys: ['name'],
      items: {
        type: 'object',
        description: 'The last sync on one member cluster.',
        required: ['name'],
        properties: {
          name: { type: 'string', description: 'The ClusterTarget: its name when it is in the DQR\'s own namespace, else namespace/name (as in pendingPrune and failingRows).', maxLength: 317 },
          applied: countSchema('Objects applied or already up to date.'),
          failed: countSchema('Objects that could not be applied.'),
          pruned: countSchema('Objects deleted because their row is gone.'),
          lastError: {
            type: 'string',
            description: 'The last error on this cluster, shortened.',
            maxLength: STATUS_LIMITS.errorMessageLength,
          },
        },
      },
    },
    rowKeyColumns: {
      type: 'array',
      description:
        'The columns the row keys on this DQR\'s objects are made of. Kept until a sync re-stamps every object under new ones, so a row that fails while spec.rowKey (or the first column) changes still keeps the objects stamped with its former key.',
      maxItems: 16,
      listType: 'atomic',
      items: { type: 'string', description: 'A column name.', maxLength: 63 },
    },
    pendingPrune: {
      type: 'object',
      description:
        'A prune over spec.pruneLimit that is waiting for a person: nothing was pruned. Setting the rowcast.dev/confirm-prune annotation to its id releases exactly this prune (the same objects); a sync within the limit removes it.',
      required: ['id', 'wanted', 'allowed', 'managed'],
      properties: {
        id: { type: 'string', description: 'Names the set of objects this prune would delete; the confirmation must equal it.', maxLength: 64 },
        wanted: countSchema('Objects the sync would prune.'),
        allowed: countSchema('Objects spec.pruneLimit allows one sync to prune.'),
        managed: countSchema('Objects the DQR managed before the sync, on the clusters it would prune (or on the one cluster named).'),
        cluster: { type: 'string', description: 'Set when one cluster alone was over the limit; the counts are then that cluster\'s. Named as in status.clusters.', maxLength: 317 },
        clusters: {
          type: 'array',
          description:
            'What each cluster managed when this prune was first blocked. Until it is released or gone, the limit stays a share of these counts, not of the objects the blocked syncs created since.',
          maxItems: STATUS_LIMITS.clusters,
          listType: 'map',
          listMapKeys: ['name'],
          items: {
            type: 'object',
            description: 'One cluster\'s count.',
            required: ['name', 'managed'],
            properties: {
              name: { type: 'string', description: 'The cluster, named as in status.clusters.', maxLength: 317 },
              managed: countSchema('Objects it managed.'),
            },
          },
        },
      },
    },
    failingRowCount: countSchema('Rows the last sync could not render or apply, on any cluster (failingRows lists the first of them).'),
    failingRows: {
      type: 'array',
      description: `The first ${STATUS_LIMITS.failingRows} rows that failed, with where and why.`,
      maxItems: STATUS_LIMITS.failingRows,
      listType: 'atomic',
      items: {
        type: 'object',
        description: 'One failed row.',
        required: ['rowKey', 'message'],
        properties: {
          rowKey: { type: 'string', description: 'The row key.', maxLength: STATUS_LIMITS.rowKeyLength },
          cluster: { type: 'string', description: 'The cluster it failed on, when it failed on one; named as in status.clusters.', maxLength: 317 },
          field: {
            type: 'string',
            description:
              "The template location or manifest field at fault. For an object a member refused: the field its answer names, else the namespace it lacks, else metadata.name (the object as a whole).",
            maxLength: 1024,
          },
          message: { type: 'string', description: 'What went wrong.', maxLength: STATUS_LIMITS.errorMessageLength },
          conflict: { type: 'boolean', description: 'True when the object is held by someone else (another owner, or none): reported, never taken.' },
        },
      },
    },
  },
};

export interface ConnectionSecretRef {
  readonly name: string;
  readonly hostKey: string;
  readonly portKey: string;
  readonly userKey: string;
  readonly passwordKey: string;
  readonly dbNameKey: string;
  readonly sslModeKey: string;
}

export type ChangeDetection =
  | { readonly mode: 'none' }
  | { readonly mode: 'timestamp'; readonly tableName: string; readonly timestampColumn: string }
  | { readonly mode: 'notify'; readonly channel: string };

export interface ClusterRef {
  /** undefined: the DQR's own namespace. */
  readonly namespace: string | undefined;
  readonly name: string;
}

export interface Targets {
  readonly clusters: readonly ClusterRef[];
  readonly clusterSelector: LabelSelector | undefined;
  readonly rowClusterColumn: string | undefined;
}

export type PruneLimit = { readonly kind: 'percent'; readonly percent: number } | { readonly kind: 'count'; readonly count: number };

export type DeletionPolicy = 'Delete' | 'Orphan';

export type DriftPolicy = 'Heal' | 'Report' | 'Ignore';

/** spec.ignoreFields, one kind's entry: `kind` as allowedKinds writes it. */
export interface IgnoredFields {
  readonly kind: string;
  readonly jsonPointers: readonly string[];
}

/** The spec with defaults applied and durations in milliseconds. */
export interface DatabaseQueryResourceSpec {
  readonly database: {
    readonly type: 'postgres';
    readonly connectionSecretRef: ConnectionSecretRef;
    readonly pool: { readonly max: number; readonly idleTimeoutMs: number; readonly statementTimeoutMs: number };
  };
  readonly query: string;
  /** undefined: the first column. */
  readonly rowKey: readonly string[] | undefined;
  readonly pollIntervalMs: number;
  readonly changeDetection: ChangeDetection;
  readonly template: string;
  /** spec.allowedKinds as written; undefined: the template's literal kinds. */
  readonly allowedKinds: readonly string[] | undefined;
  readonly targets: Targets;
  readonly prune: boolean;
  readonly pruneLimit: PruneLimit;
  readonly deletionPolicy: DeletionPolicy;
  readonly driftPolicy: DriftPolicy;
  readonly ignoreFields: readonly IgnoredFields[];
  readonly statusUpdateQueryTemplate: string | undefined;
  /** kinds undefined: every kind. */
  readonly statusUpdate: { readonly kinds: readonly string[] | undefined; readonly minIntervalMs: number };
  readonly ledger: { readonly table: string } | undefined;
}

export interface DatabaseQueryResource {
  readonly apiVersion: typeof API_VERSION;
  readonly kind: typeof DATABASE_QUERY_RESOURCE.kind;
  readonly metadata: ObjectMeta;
  readonly spec: DatabaseQueryResourceSpec;
}

export interface ClusterSyncStatus {
  readonly name: string;
  readonly applied?: number;
  readonly failed?: number;
  readonly pruned?: number;
  readonly lastError?: string;
}

export interface FailingRow {
  readonly rowKey: string;
  readonly cluster?: string;
  readonly field?: string;
  readonly message: string;
  readonly conflict?: boolean;
}

export interface PendingPruneStatus {
  readonly id: string;
  readonly wanted: number;
  readonly allowed: number;
  readonly managed: number;
  readonly cluster?: string;
  readonly clusters?: readonly { readonly name: string; readonly managed: number }[];
}

export interface DatabaseQueryResourceStatus {
  readonly observedGeneration?: number;
  readonly conditions?: readonly Condition[];
  readonly rowCount?: number;
  readonly clusterCount?: number;
  readonly managedResources?: readonly string[];
  readonly lastSyncTime?: string;
  readonly clusters?: readonly ClusterSyncStatus[];
  readonly failingRowCount?: number;
  readonly failingRows?: readonly FailingRow[];
  readonly pendingPrune?: PendingPruneStatus;
  readonly rowKeyColumns?: readonly string[];
}

/** How many objects one sync may prune before it needs a confirmation. */
export function allowedPrunes(limit: PruneLimit, managedObjects: number): number {
  return limit.kind === 'count' ? limit.count : Math.floor((managedObjects * limit.percent) / 100);
}

// The shape `validate` leaves behind once defaults are in and every check passed.
interface ValidSpec {
  database: {
    type: 'postgres';
    connectionSecretRef: ConnectionSecretRef;
    pool: { max: number; idleTimeout: string; statementTimeout: string };
  };
  query: string;
  rowKey?: string[];
  pollInterval: string;
  changeDetection: { mode: ChangeDetection['mode']; tableName?: string; timestampColumn?: string; channel?: string };
  template: string;
  allowedKinds?: string[];
  targets: {
    clusters?: string[];
    clusterSelector?: {
      matchLabels?: Record<string, string>;
      matchExpressions?: { key: string; operator: LabelSelectorOperator; values?: string[] }[];
    };
    rowClusterColumn?: string;
  };
  prune: boolean;
  pruneLimit: number | string;
  deletionPolicy: DeletionPolicy;
  driftPolicy: DriftPolicy;
  ignoreFields?: IgnoredFields[];
  statusUpdateQueryTemplate?: string;
  statusUpdate?: { kinds?: string[]; minInterval: string };
  ledger?: { table: string };
}

function toChangeDetection(raw: ValidSpec['changeDetection']): ChangeDetection {
  switch (raw.mode) {
    case 'none':
      return { mode: 'none' };
    case 'timestamp':
      return { mode: 'timestamp', tableName: raw.tableName ?? '', timestampColumn: raw.timestampColumn ?? '' };
    case 'notify':
      return { mode: 'notify', channel: raw.channel ?? '' };
  }
}

function toClusterRef(ref: string): ClusterRef {
  const slash = ref.indexOf('/');
  return slash < 0 ? { namespace: undefined, name: ref } : { namespace: ref.slice(0, slash), name: ref.slice(slash + 1) };
}

function toSpec(raw: ValidSpec): DatabaseQueryResourceSpec {
  const { pool } = raw.database;
  return {
    database: {
      type: raw.database.type,
      connectionSecretRef: raw.database.connectionSecretRef,
      pool: {
        max: pool.max,
        idleTimeoutMs: parseGoDuration(pool.idleTimeout),
        statementTimeoutMs: parseGoDuration(pool.statementTimeout),
      },
    },
    query: raw.query,
    rowKey: raw.rowKey,
    pollIntervalMs: parseGoDuration(raw.pollInterval),
    changeDetection: toChangeDetection(raw.changeDetection),
    template: raw.template,
    allowedKinds: raw.allowedKinds,
    targets: {
      clusters: (raw.targets.clusters ?? []).map(toClusterRef),
      clusterSelector: raw.targets.clusterSelector === undefined ? undefined : toLabelSelector(raw.targets.clusterSelector),
      rowClusterColumn: raw.targets.rowClusterColumn,
    },
    prune: raw.prune,
    pruneLimit:
      typeof raw.pruneLimit === 'number'
        ? { kind: 'count', count: raw.pruneLimit }
        : { kind: 'percent', percent: Number(raw.pruneLimit.slice(0, -1)) },
    deletionPolicy: raw.deletionPolicy,
    driftPolicy: raw.driftPolicy,
    ignoreFields: raw.ignoreFields ?? [],
    statusUpdateQueryTemplate: raw.statusUpdateQueryTemplate,
    statusUpdate: { kinds: raw.statusUpdate?.kinds, minIntervalMs: raw.statusUpdate === undefined ? 0 : parseGoDuration(raw.statusUpdate.minInterval) },
    ledger: raw.ledger,
  };
}

/**
 * Validates a DatabaseQueryResource as the apiserver would (schema and CEL
 * rules), plus unknown fields, and returns it defaulted, or every error found.
 */
export function parseDatabaseQueryResource(obj: unknown): ParseResult<DatabaseQueryResource> {
  const envelope = parseEnvelope(obj, DATABASE_QUERY_RESOURCE.kind);
  const spec = validate(databaseQueryResourceSpecSchema, envelope.spec, 'spec');
  const errors = [...envelope.errors, ...spec.errors];
  if (errors.length > 0 || envelope.metadata === undefined) return { ok: false, errors };
  return {
    ok: true,
    value: {
      apiVersion: API_VERSION,
      kind: DATABASE_QUERY_RESOURCE.kind,
      metadata: envelope.metadata,
      spec: toSpec(spec.value as ValidSpec),
    },
  };
}
