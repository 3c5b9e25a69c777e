// One description of each CRD serves two readers: `openapi.ts` turns it into
// the structural schema the apiserver enforces, `validate.ts` enforces it in
// process. Keeping both in one place is what makes "the parser and the
// apiserver agree" true by construction rather than by care. The only part
// written twice is each x-kubernetes-validations rule: its CEL text for the
// apiserver and `holds` for us, side by side so they are reviewed together.

/** field.ErrorType names the apiserver accepts as a rule's `reason`. */
export type RuleReason = 'FieldValueInvalid' | 'FieldValueRequired' | 'FieldValueForbidden' | 'FieldValueDuplicate';

export interface Rule<T> {
  readonly cel: string;
  readonly message: string;
  /** Relative to the node the rule sits on, e.g. `.channel`, as CEL wants it. */
  readonly fieldPath?: string;
  readonly reason?: RuleReason;
  readonly holds: (self: T) => boolean;
}

export type JsonObject = Readonly<Record<string, unknown>>;

interface Described {
  readonly description: string;
}

export interface StringSchema extends Described {
  readonly type: 'string';
  readonly minLength?: number;
  readonly maxLength?: number;
  /** Anchored; must mean the same in Go's RE2 and in a JS `u` regex. */
  readonly pattern?: string;
  readonly enum?: readonly string[];
  readonly format?: 'date-time';
  readonly default?: string;
  readonly rules?: readonly Rule<string>[];
}

export interface IntegerSchema extends Described {
  readonly type: 'integer';
  readonly format?: 'int32' | 'int64';
  readonly minimum?: number;
  readonly maximum?: number;
  readonly default?: number;
}

export interface BooleanSchema extends Described {
  readonly type: 'boolean';
  readonly default?: boolean;
}

/** x-kubernetes-int-or-string: CEL sees an int or a string. */
export interface IntOrStringSchema extends Described {
  readonly type: 'int-or-string';
  readonly default?: number | string;
  readonly rules?: readonly Rule<number | string>[];
}

export interface ObjectSchema extends Described {
  readonly type: 'object';
  readonly properties: Readonly<Record<string, Schema>>;
  readonly required?: readonly string[];
  readonly default?: JsonObject;
  /** Whole-object replacement under server-side apply. */
  readonly atomic?: boolean;
  readonly rules?: readonly Rule<JsonObject>[];
}

/** An object with free keys (additionalProperties). */
export interface MapSchema extends Described {
  readonly type: 'map';
  readonly values: Schema;
  readonly maxProperties?: number;
}

export interface ArraySchema extends Described {
  readonly type: 'array';
  readonly items: Schema;
  readonly minItems?: number;
  readonly maxItems?: number;
  /** `set` and `map` make the apiserver refuse duplicates. */
  readonly listType?: 'atomic' | 'set' | 'map';
  readonly listMapKeys?: readonly string[];
  readonly rules?: readonly Rule<readonly unknown[]>[];
}

export type Schema =
  | StringSchema
  | IntegerSchema
  | BooleanSchema
  | IntOrStringSchema
  | ObjectSchema
  | MapSchema
  | ArraySchema;
