// Building blocks shared by several kinds: label selectors, conditions, references.
import { array, enumeration, integer, object, optional, required, string, stringMap, type CelRule, type Schema } from './schema.js';

export const GROUP = 'secai.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

const QUALIFIED_NAME = '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$';
const LABEL_VALUE = '^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$';
export const DNS_SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
export const DNS_LABEL = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
export const SHA256_HEX = '^[0-9a-f]{64}$';

export function labelSelector(name: string, description: string): Schema {
  return object(name, description, {
    matchLabels: optional(
      stringMap(
        'Labels a node must carry, each key with exactly this value.',
        string('The required label value.', { maxLength: 63, pattern: LABEL_VALUE }),
        {
          maxProperties: 64,
          rules: [{ rule: "self.all(k, k.size() <= 317 && k.matches(r'" + QUALIFIED_NAME + "'))", message: 'label keys must be qualified names' }],
        },
      ),
    ),
    matchExpressions: optional(
      array(
        'Set-based requirements; all must hold.',
        object(
          'LabelSelectorRequirement',
          'A label key, an operator and values.',
          {
            key: required(string('The label key.', { maxLength: 317, minLength: 1, pattern: QUALIFIED_NAME })),
            operator: required(enumeration('How the key relates to the values.', ['In', 'NotIn', 'Exists', 'DoesNotExist'])),
            values: optional(
              array('Values for In and NotIn.', string('A label value.', { maxLength: 63, pattern: LABEL_VALUE }), {
                maxItems: 64,
              }),
            ),
          },
          {
            rules: [
              {
                rule: "self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0 : !has(self.values) || size(self.values) == 0",
                message: 'In and NotIn need at least one value; Exists and DoesNotExist take none',
                fieldPath: '.values',
              },
            ],
          },
        ),
        { maxItems: 32 },
      ),
    ),
  });
}

export function conditions(): Schema {
  return array(
    'The latest observations of the object\'s state. "Ready" summarises the others.',
    object('Condition', 'One aspect of the current state (metav1.Condition).', {
      type: required(
        string('The aspect this condition describes, in CamelCase.', {
          maxLength: 316,
          pattern: '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$',
        }),
      ),
      status: required(enumeration('Whether the condition holds.', ['True', 'False', 'Unknown'])),
      observedGeneration: optional(
        integer('The metadata.generation this condition was computed from.', { minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
      ),
      lastTransitionTime: required(string('When the status last changed.', { maxLength: 64, format: 'date-time' })),
      reason: required(
        string('A CamelCase machine-readable reason for the last transition.', {
          maxLength: 1024,
          minLength: 1,
          pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$',
        }),
      ),
      message: required(string('A human-readable explanation.', { maxLength: 32768 })),
    }),
    { maxItems: 16, listType: 'map', listMapKeys: ['type'] },
  );
}

export function objectKeyRef(name: string, description: string, what: 'Secret' | 'ConfigMap'): Schema {
  return object(name, description, {
    namespace: required(string(`The namespace of the ${what}.`, { maxLength: 63, minLength: 1, pattern: DNS_LABEL })),
    name: required(string(`The name of the ${what}.`, { maxLength: 253, minLength: 1, pattern: DNS_SUBDOMAIN })),
    key: required(
      string(`The key inside the ${what}'s data.`, { maxLength: 253, minLength: 1, pattern: '^[-._a-zA-Z0-9]+$' }),
    ),
  });
}

export function sha256(description: string, rules?: CelRule[]): Schema {
  return string(description, { maxLength: 64, minLength: 64, pattern: SHA256_HEX, ...(rules ? { rules } : {}) });
}

export function timestamp(description: string): Schema {
  return string(description, { maxLength: 64, format: 'date-time' });
}

export function count(description: string): Schema {
  return integer(description, { minimum: 0, maximum: 1_000_000 });
}

export function observedGeneration(): Schema {
  return integer('The metadata.generation the status was computed from.', { minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
}
