// A small schema language for the CRDs. Every builder takes a description first, so no field can
// lack one (`kubectl explain` reads them), and every string, list and map builder demands its
// bounds. One definition yields both the OpenAPI v3 schema in the CRD YAML and the TypeScript
// interfaces (see render-types.ts); both are generated and checked for drift by a test.

export interface CelRule {
  rule: string;
  message: string;
  fieldPath?: string;
  reason?: 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired' | 'FieldValueDuplicate';
}

/** The subset of OpenAPI v3 that structural CRD schemas use. */
export interface OpenApiSchema {
  type?: 'string' | 'integer' | 'number' | 'boolean' | 'object' | 'array';
  description?: string;
  format?: string;
  pattern?: string;
  enum?: (string | number)[];
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
  minProperties?: number;
  maxProperties?: number;
  default?: unknown;
  items?: OpenApiSchema;
  properties?: Record<string, OpenApiSchema>;
  additionalProperties?: OpenApiSchema;
  required?: string[];
  'x-kubernetes-int-or-string'?: true;
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-map-type'?: 'atomic' | 'granular';
  'x-kubernetes-validations'?: CelRule[];
}

/** How a schema node renders as a TypeScript type. */
export type TsShape =
  | { kind: 'scalar'; ts: string }
  | { kind: 'array'; items: Schema }
  | { kind: 'map'; values: Schema }
  | { kind: 'object'; name: string; props: Record<string, Property> };

export interface Schema {
  readonly openapi: OpenApiSchema;
  readonly shape: TsShape;
}

export interface Property {
  readonly schema: Schema;
  readonly required: boolean;
}

interface Common {
  rules?: CelRule[];
}

function withRules(openapi: OpenApiSchema, rules: CelRule[] | undefined): OpenApiSchema {
  return rules && rules.length > 0 ? { ...openapi, 'x-kubernetes-validations': rules } : openapi;
}

export interface StringOptions extends Common {
  maxLength: number;
  minLength?: number;
  pattern?: string;
  format?: 'date-time' | 'byte';
  default?: string;
}

export function string(description: string, opts: StringOptions): Schema {
  const openapi: OpenApiSchema = { type: 'string', description, maxLength: opts.maxLength };
  if (opts.minLength !== undefined) openapi.minLength = opts.minLength;
  if (opts.pattern !== undefined) openapi.pattern = opts.pattern;
  if (opts.format !== undefined) openapi.format = opts.format;
  if (opts.default !== undefined) openapi.default = opts.default;
  return { openapi: withRules(openapi, opts.rules), shape: { kind: 'scalar', ts: 'string' } };
}

export function enumeration(description: string, values: readonly string[], opts: Common & { default?: string } = {}): Schema {
  const openapi: OpenApiSchema = { type: 'string', description, enum: [...values] };
  if (opts.default !== undefined) openapi.default = opts.default;
  const ts = values.map((v) => JSON.stringify(v)).join(' | ');
  return { openapi: withRules(openapi, opts.rules), shape: { kind: 'scalar', ts } };
}

export interface NumberOptions extends Common {
  minimum: number;
  maximum: number;
  default?: number;
}

export function integer(description: string, opts: NumberOptions & { format?: 'int32' | 'int64' }): Schema {
  const openapi: OpenApiSchema = {
    type: 'integer',
    description,
    format: opts.format ?? 'int64',
    minimum: opts.minimum,
    maximum: opts.maximum,
  };
  if (opts.default !== undefined) openapi.default = opts.default;
  return { openapi: withRules(openapi, opts.rules), shape: { kind: 'scalar', ts: 'number' } };
}

export function number(description: string, opts: NumberOptions): Schema {
  const openapi: OpenApiSchema = { type: 'number', description, minimum: opts.minimum, maximum: opts.maximum };
  if (opts.default !== undefined) openapi.default = opts.default;
  return { openapi: withRules(openapi, opts.rules), shape: { kind: 'scalar', ts: 'number' } };
}

export function boolean(description: string, opts: Common & { default?: boolean } = {}): Schema {
  const openapi: OpenApiSchema = { type: 'boolean', description };
  if (opts.default !== undefined) openapi.default = opts.default;
  return { openapi: withRules(openapi, opts.rules), shape: { kind: 'scalar', ts: 'boolean' } };
}

/** An integer or a percentage string such as "25%" (Kubernetes IntOrString). */
export function intOrPercent(description: string, opts: Common & { default?: number | string } = {}): Schema {
  const openapi: OpenApiSchema = {
    description,
    'x-kubernetes-int-or-string': true,
    'x-kubernetes-validations': [
      {
        rule: "type(self) == int ? self >= 0 && self <= 100000 : self.matches('^(100|[1-9]?[0-9])%$')",
        message: 'must be a non-negative integer or a percentage from 0% to 100%',
      },
      ...(opts.rules ?? []),
    ],
  };
  if (opts.default !== undefined) openapi.default = opts.default;
  return { openapi, shape: { kind: 'scalar', ts: 'number | string' } };
}

export interface ArrayOptions extends Common {
  maxItems: number;
  minItems?: number;
  listType?: 'atomic' | 'set' | 'map';
  listMapKeys?: string[];
  default?: unknown[];
}

export function array(description: string, items: Schema, opts: ArrayOptions): Schema {
  const openapi: OpenApiSchema = { type: 'array', description, items: items.openapi, maxItems: opts.maxItems };
  if (opts.minItems !== undefined) openapi.minItems = opts.minItems;
  if (opts.listType !== undefined) openapi['x-kubernetes-list-type'] = opts.listType;
  if (opts.listMapKeys !== undefined) openapi['x-kubernetes-list-map-keys'] = opts.listMapKeys;
  if (opts.default !== undefined) openapi.default = opts.default;
  return { openapi: withRules(openapi, opts.rules), shape: { kind: 'array', items } };
}

export function stringMap(description: string, values: Schema, opts: Common & { maxProperties: number }): Schema {
  const openapi: OpenApiSchema = {
    type: 'object',
    description,
    additionalProperties: values.openapi,
    maxProperties: opts.maxProperties,
  };
  return { openapi: withRules(openapi, opts.rules), shape: { kind: 'map', values } };
}

export function required(schema: Schema): Property {
  return { schema, required: true };
}

export function optional(schema: Schema): Property {
  return { schema, required: false };
}

export interface ObjectOptions extends Common {
  minProperties?: number;
}

/** An object with named properties; `name` is the TypeScript interface it renders as. */
export function object(name: string, description: string, props: Record<string, Property>, opts: ObjectOptions = {}): Schema {
  const properties: Record<string, OpenApiSchema> = {};
  const requiredNames: string[] = [];
  for (const [key, prop] of Object.entries(props)) {
    properties[key] = prop.schema.openapi;
    if (prop.required) requiredNames.push(key);
  }
  const openapi: OpenApiSchema = { type: 'object', description, properties };
  if (requiredNames.length > 0) openapi.required = requiredNames;
  if (opts.minProperties !== undefined) openapi.minProperties = opts.minProperties;
  return { openapi: withRules(openapi, opts.rules), shape: { kind: 'object', name, props } };
}

/** Adds CEL rules to an existing schema node (for shared building blocks used in several places). */
export function withValidation(schema: Schema, rules: CelRule[]): Schema {
  const existing = schema.openapi['x-kubernetes-validations'] ?? [];
  return { ...schema, openapi: { ...schema.openapi, 'x-kubernetes-validations': [...existing, ...rules] } };
}

/** The same node with another description (shared building blocks described in their context). */
export function describedAs(schema: Schema, description: string): Schema {
  return { ...schema, openapi: { ...schema.openapi, description } };
}
