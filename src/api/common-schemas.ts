import { STATUS_LIMITS } from './constants.ts';
import { parseGoDuration } from './go-duration.ts';
import type { ArraySchema, IntegerSchema, ObjectSchema, StringSchema } from './schema.ts';

// Patterns are written once and used by both the CRD (Go RE2) and the parser
// (JS `u` regexes); they stay inside the syntax the two engines share.
export const PATTERNS = {
  // Go's grammar minus signs and bare-dot forms ("1.s", ".5s"), which are
  // legal in Go but only ever typos in a manifest. "0" is Go's unitless zero.
  goDuration: '^(0|([0-9]+(\\.[0-9]+)?(ns|us|\u00b5s|\u03bcs|ms|s|m|h))+)$',
  dnsLabel: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$',
  dnsSubdomain: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$',
  secretKey: '^[-._a-zA-Z0-9]+$',
  // Unquoted SQL identifiers only: these names are spliced into SQL
  // (quoted), so nothing that needs escaping can reach it.
  sqlIdentifier: '^[A-Za-z_][A-Za-z0-9_$]*$',
  sqlQualifiedIdentifier: '^[A-Za-z_][A-Za-z0-9_$]*(\\.[A-Za-z_][A-Za-z0-9_$]*)?$',
  qualifiedName:
    '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$',
  labelValue: '^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$',
  conditionReason: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$',
} as const;

const durationRegex = new RegExp(PATTERNS.goDuration, 'u');

function durationMs(text: string): number | undefined {
  try {
    return parseGoDuration(text);
  } catch {
    // Overflow: CEL's duration() fails on it too, which fails the rule.
    return undefined;
  }
}

/**
 * A Go duration string with a floor. The rule re-checks the pattern so that a
 * malformed value yields only the pattern error, not also a CEL evaluation
 * error from duration().
 */
export function durationSchema(options: {
  readonly description: string;
  readonly default: string;
  readonly minimum: string;
  readonly zeroAllowed?: boolean;
}): StringSchema {
  const zero = options.zeroAllowed === true;
  const minimumMs = parseGoDuration(options.minimum);
  return {
    type: 'string',
    description: options.description,
    maxLength: 64,
    pattern: PATTERNS.goDuration,
    default: options.default,
    rules: [
      {
        cel:
          `!self.matches(r'${PATTERNS.goDuration}') || ` +
          (zero ? `duration(self) == duration('0s') || ` : '') +
          `duration(self) >= duration('${options.minimum}')`,
        message: `must be at least ${options.minimum}${zero ? ' (or 0)' : ''}`,
        holds: (self) => {
          if (!durationRegex.test(self)) return true;
          const ms = durationMs(self);
          return ms !== undefined && ((zero && ms === 0) || ms >= minimumMs);
        },
      },
    ],
  };
}

export function nameSchema(description: string): StringSchema {
  return { type: 'string', description, minLength: 1, maxLength: 253, pattern: PATTERNS.dnsSubdomain };
}

export function namespaceListSchema(description: string, itemDescription: string, allowStar: boolean): ArraySchema {
  return {
    type: 'array',
    description,
    maxItems: 256,
    listType: 'set',
    items: {
      type: 'string',
      description: itemDescription,
      maxLength: 63,
      pattern: allowStar ? `^(\\*|${PATTERNS.dnsLabel.slice(1, -1)})$` : PATTERNS.dnsLabel,
    },
  };
}

const labelValue: StringSchema = {
  type: 'string',
  description: 'A label value: up to 63 alphanumerics, "-", "_" or ".", starting and ending alphanumeric.',
  maxLength: 63,
  pattern: PATTERNS.labelValue,
};

export function labelSelectorSchema(description: string): ObjectSchema {
  return {
    type: 'object',
    description,
    atomic: true,
    properties: {
      matchLabels: {
        type: 'map',
        description: 'Labels a ClusterTarget must carry, each with exactly this value.',
        maxProperties: 64,
        values: labelValue,
      },
      matchExpressions: {
        type: 'array',
        description: 'Requirements on a ClusterTarget\'s labels; all must hold.',
        maxItems: 32,
        listType: 'atomic',
        items: {
          type: 'object',
          description: 'One requirement: a label key, an operator and, for In and NotIn, the values.',
          required: ['key', 'operator'],
          properties: {
            key: {
              type: 'string',
              description: 'The label key the requirement applies to.',
              maxLength: 317,
              pattern: PATTERNS.qualifiedName,
            },
            operator: {
              type: 'string',
              description: 'How the key relates to the values.',
              enum: ['In', 'NotIn', 'Exists', 'DoesNotExist'],
            },
            values: {
              type: 'array',
              description: 'The values for In and NotIn; must be empty for Exists and DoesNotExist.',
              maxItems: 64,
              listType: 'atomic',
              items: labelValue,
            },
          },
          rules: [
            {
              cel: "!has(self.operator) || !(self.operator in ['In', 'NotIn']) || (has(self.values) && size(self.values) > 0)",
              message: 'values must be non-empty when operator is In or NotIn',
              fieldPath: '.values',
              reason: 'FieldValueRequired',
              holds: (self) =>
                !['In', 'NotIn'].includes(self['operator'] as string) ||
                (Array.isArray(self['values']) && self['values'].length > 0),
            },
            {
              cel: "!has(self.operator) || !(self.operator in ['Exists', 'DoesNotExist']) || !has(self.values) || size(self.values) == 0",
              message: 'values must be empty when operator is Exists or DoesNotExist',
              fieldPath: '.values',
              reason: 'FieldValueForbidden',
              holds: (self) =>
                !['Exists', 'DoesNotExist'].includes(self['operator'] as string) ||
                !Array.isArray(self['values']) ||
                self['values'].length === 0,
            },
          ],
        },
      },
    },
  };
}

export function generationSchema(description: string): IntegerSchema {
  return { type: 'integer', format: 'int64', minimum: 0, description };
}

export function countSchema(description: string): IntegerSchema {
  return { type: 'integer', format: 'int64', minimum: 0, description };
}

/** metav1.Condition as KEP-1623 defines it, keyed by type. */
export function conditionsSchema(types: readonly string[]): ArraySchema {
  return {
    type: 'array',
    description: `Latest observations of the object's state: ${types.join(', ')}.`,
    maxItems: STATUS_LIMITS.conditions,
    listType: 'map',
    listMapKeys: ['type'],
    items: {
      type: 'object',
      description: 'One aspect of the current state, in the metav1.Condition shape.',
      required: ['type', 'status', 'lastTransitionTime', 'reason', 'message'],
      properties: {
        type: {
          type: 'string',
          description: `The aspect this condition describes: ${types.join(', ')}.`,
          maxLength: 316,
          pattern: PATTERNS.qualifiedName,
        },
        status: { type: 'string', description: 'True, False or Unknown.', enum: ['True', 'False', 'Unknown'] },
        observedGeneration: generationSchema('The metadata.generation this condition was set from.'),
        lastTransitionTime: {
          type: 'string',
          description: 'When the status last changed.',
          format: 'date-time',
        },
        reason: {
          type: 'string',
          description: 'A CamelCase word for why the condition has its status.',
          minLength: 1,
          maxLength: 1024,
          pattern: PATTERNS.conditionReason,
        },
        message: {
          type: 'string',
          description: 'A sentence for a person; may be empty.',
          maxLength: STATUS_LIMITS.conditionMessageLength,
        },
      },
    },
  };
}
