// REST paths of the secai.io kinds.
import { GROUP, VERSION } from './common.js';
import { RESOURCES } from './index.js';

export function pluralOf(kind: string): string {
  const def = RESOURCES.find((r) => r.kind === kind);
  if (!def) throw new Error(`unknown secai.io kind ${kind}`);
  return def.plural;
}

/** `/apis/secai.io/v1alpha1/<plural>[/<name>[/<subresource>]]` */
export function resourcePath(plural: string, name?: string, subresource?: 'status'): string {
  const base = `/apis/${GROUP}/${VERSION}/${plural}`;
  if (name === undefined) return base;
  return `${base}/${encodeURIComponent(name)}${subresource ? `/${subresource}` : ''}`;
}
