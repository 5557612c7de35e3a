// Turns a kind's schema into a CustomResourceDefinition object.
import { GROUP, VERSION } from './common.js';
import type { OpenApiSchema, Schema } from './schema.js';

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  jsonPath: string;
  description: string;
  priority?: number;
}

export interface ResourceDefinition {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  description: string;
  spec: Schema;
  status: Schema;
  printerColumns: PrinterColumn[];
  /** Rules over the whole object (for example metadata.name against a spec field). */
  rules?: NonNullable<OpenApiSchema['x-kubernetes-validations']>;
}

export const CATEGORY = 'secai';

export function customResourceDefinition(def: ResourceDefinition): Record<string, unknown> {
  const schema: OpenApiSchema = {
    type: 'object',
    description: def.description,
    properties: {
      apiVersion: { type: 'string', description: 'The versioned schema of this representation of an object.' },
      kind: { type: 'string', description: 'The REST resource this object represents.' },
      metadata: { type: 'object' },
      spec: def.spec.openapi,
      status: def.status.openapi,
    },
    required: ['spec'],
  };
  if (def.rules) schema['x-kubernetes-validations'] = def.rules;
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${def.plural}.${GROUP}` },
    spec: {
      group: GROUP,
      scope: 'Cluster',
      names: {
        kind: def.kind,
        listKind: `${def.kind}List`,
        plural: def.plural,
        singular: def.singular,
        shortNames: def.shortNames,
        categories: [CATEGORY],
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            ...def.printerColumns,
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp', description: 'Time since creation.' },
          ],
          schema: { openAPIV3Schema: schema },
        },
      ],
    },
  };
}

export function conditionColumn(type: string, name = type): PrinterColumn {
  return {
    name,
    type: 'string',
    jsonPath: `.status.conditions[?(@.type=="${type}")].status`,
    description: `Status of the ${type} condition.`,
  };
}
