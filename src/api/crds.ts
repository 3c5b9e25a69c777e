import { clusterTargetSpecSchema, clusterTargetStatusSchema } from './cluster-target.ts';
import { CATEGORY, CLUSTER_TARGET, CONDITION_TYPES, DATABASE_QUERY_RESOURCE, GROUP, SHARDING_LABELS, VERSION } from './constants.ts';
import { databaseQueryResourceSpecSchema, databaseQueryResourceStatusSchema } from './database-query-resource.ts';
import type { ObjectSchema, Rule, Schema } from './schema.ts';

type Json = Record<string, unknown>;

function rules<T>(list: readonly Rule<T>[] | undefined): Json {
  if (list === undefined || list.length === 0) return {};
  return {
    'x-kubernetes-validations': list.map((r) => ({
      rule: r.cel,
      message: r.message,
      ...(r.fieldPath === undefined ? {} : { fieldPath: r.fieldPath }),
      ...(r.reason === undefined ? {} : { reason: r.reason }),
    })),
  };
}

// Copies only the keys that are set, so the YAML has no `undefined` noise.
function defined(fields: Json): Json {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined));
}

/** The structural OpenAPI v3 schema the apiserver enforces for `schema`. */
function toOpenApi(schema: Schema): Json {
  switch (schema.type) {
    case 'string':
      return defined({
        type: 'string',
        description: schema.description,
        format: schema.format,
        enum: schema.enum,
        minLength: schema.minLength,
        maxLength: schema.maxLength,
        pattern: schema.pattern,
        default: schema.default,
        ...rules(schema.rules),
      });
    case 'integer':
      return defined({
        type: 'integer',
        description: schema.description,
        format: schema.format,
        minimum: schema.minimum,
        maximum: schema.maximum,
        default: schema.default,
      });
    case 'boolean':
      return defined({ type: 'boolean', description: schema.description, default: schema.default });
    case 'int-or-string':
      return defined({
        'x-kubernetes-int-or-string': true,
        anyOf: [{ type: 'integer' }, { type: 'string' }],
        description: schema.description,
        default: schema.default,
        ...rules(schema.rules),
      });
    case 'object':
      return defined({
        type: 'object',
        description: schema.description,
        required: schema.required,
        default: schema.default,
        'x-kubernetes-map-type': schema.atomic === true ? 'atomic' : undefined,
        properties: Object.fromEntries(Object.entries(schema.properties).map(([k, v]) => [k, toOpenApi(v)])),
        ...rules(schema.rules),
      });
    case 'map':
      return defined({
        type: 'object',
        description: schema.description,
        maxProperties: schema.maxProperties,
        additionalProperties: toOpenApi(schema.values),
      });
    case 'array':
      return defined({
        type: 'array',
        description: schema.description,
        minItems: schema.minItems,
        maxItems: schema.maxItems,
        'x-kubernetes-list-type': schema.listType,
        'x-kubernetes-list-map-keys': schema.listMapKeys,
        items: toOpenApi(schema.items),
        ...rules(schema.rules),
      });
  }
}

interface ResourceNames {
  readonly kind: string;
  readonly listKind: string;
  readonly plural: string;
  readonly singular: string;
  readonly shortName: string;
}

interface PrinterColumn {
  readonly name: string;
  readonly type: 'string' | 'integer' | 'date';
  readonly jsonPath: string;
  readonly description: string;
  readonly priority?: number;
}

function conditionColumn(type: string, description: string): PrinterColumn {
  return { name: type, type: 'string', jsonPath: `.status.conditions[?(@.type=="${type}")].status`, description };
}

const AGE: PrinterColumn = {
  name: 'Age',
  type: 'date',
  jsonPath: '.metadata.creationTimestamp',
  description: 'Time since creation.',
};

function crd(
  names: ResourceNames,
  description: string,
  spec: ObjectSchema,
  status: ObjectSchema,
  columns: readonly PrinterColumn[],
): Json {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${names.plural}.${GROUP}` },
    spec: {
      group: GROUP,
      names: {
        kind: names.kind,
        listKind: names.listKind,
        plural: names.plural,
        singular: names.singular,
        shortNames: [names.shortName],
        categories: [CATEGORY],
      },
      scope: 'Namespaced',
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: columns.map((c) => defined({ ...c })),
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description,
              required: ['spec'],
              properties: {
                apiVersion: {
                  type: 'string',
                  description: 'The versioned schema of this representation of an object.',
                },
                kind: { type: 'string', description: 'The REST resource this object represents.' },
                metadata: { type: 'object' },
                spec: toOpenApi(spec),
                status: toOpenApi(status),
              },
            },
          },
        },
      ],
    },
  };
}

/** The two CRDs, as committed under crds/ (scripts/generate-crds.ts writes them). */
export function customResourceDefinitions(): readonly { readonly fileName: string; readonly crd: Json }[] {
  const dqr = crd(
    DATABASE_QUERY_RESOURCE,
    'A SQL query, a template and a choice of member clusters: every row the query returns becomes Kubernetes objects on every selected cluster, kept in step with the rows.',
    databaseQueryResourceSpecSchema,
    databaseQueryResourceStatusSchema,
    [
      conditionColumn(CONDITION_TYPES.ready, 'Whether the last sync applied every row on every cluster.'),
      { name: 'Rows', type: 'integer', jsonPath: '.status.rowCount', description: 'Rows the last query returned.' },
      { name: 'Clusters', type: 'integer', jsonPath: '.status.clusterCount', description: 'Clusters selected.' },
      { name: 'Failing', type: 'integer', jsonPath: '.status.failingRowCount', description: 'Rows the last sync could not render or apply.' },
      { name: 'Blocked', type: 'integer', jsonPath: '.status.pendingPrune.wanted', description: 'Prunes waiting for the rowcast.dev/confirm-prune annotation (empty: none).' },
      {
        name: 'Reason',
        type: 'string',
        jsonPath: `.status.conditions[?(@.type=="${CONDITION_TYPES.ready}")].reason`,
        description: 'Why Ready has its status.',
        priority: 1,
      },
      {
        name: 'Last Sync',
        type: 'date',
        jsonPath: '.status.lastSyncTime',
        description: 'When the last sync finished.',
        priority: 1,
      },
      {
        name: 'Shard',
        type: 'string',
        jsonPath: `.metadata.labels.${SHARDING_LABELS.shard.replace('.', '\\.')}`,
        description: 'The controller replica that syncs it, when the controller runs sharded (empty: unassigned, or not sharded).',
        priority: 1,
      },
      AGE,
    ],
  );
  const ct = crd(
    CLUSTER_TARGET,
    'A member cluster Rowcast may write to: how to reach it, how fast, and which namespaces on both sides are allowed.',
    clusterTargetSpecSchema,
    clusterTargetStatusSchema,
    [
      conditionColumn(CONDITION_TYPES.ready, 'Whether Rowcast can use the cluster.'),
      conditionColumn(CONDITION_TYPES.reachable, 'Whether the last probe reached the apiserver.'),
      { name: 'Version', type: 'string', jsonPath: '.status.serverVersion', description: "The member's Kubernetes version." },
      {
        name: 'Managed',
        type: 'integer',
        jsonPath: '.status.managedObjects',
        description: 'Objects Rowcast manages there.',
        priority: 1,
      },
      AGE,
    ],
  );
  return [
    { fileName: `${GROUP}_${DATABASE_QUERY_RESOURCE.plural}.yaml`, crd: dqr },
    { fileName: `${GROUP}_${CLUSTER_TARGET.plural}.yaml`, crd: ct },
  ];
}
