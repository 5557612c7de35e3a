// The not-compliant taint on a fleet Node. Node taints are an atomic list shared with the kubelet
// and others, so it is changed by a JSON Patch guarded by the Node's resourceVersion (a concurrent
// change fails the patch and the reconcile retries), never by server-side apply.
import type { V1Taint } from '@kubernetes/client-node';
import { NOT_COMPLIANT_TAINT } from '../../fleet/names.js';

const isOurs = (t: V1Taint) => t.key === NOT_COMPLIANT_TAINT.key && t.effect === NOT_COMPLIANT_TAINT.effect;

export function hasNotCompliantTaint(taints: readonly V1Taint[] | undefined): boolean {
  return (taints ?? []).some(isOurs);
}

/** The taints with ours present or absent; undefined when nothing needs to change. */
export function taintsFor(taints: readonly V1Taint[] | undefined, compliant: boolean): V1Taint[] | undefined {
  const current = [...(taints ?? [])];
  if (compliant) return hasNotCompliantTaint(current) ? current.filter((t) => !isOurs(t)) : undefined;
  return hasNotCompliantTaint(current) ? undefined : [...current, { key: NOT_COMPLIANT_TAINT.key, effect: NOT_COMPLIANT_TAINT.effect }];
}

/** `add` replaces an existing member, so the same patch works whether the Node has taints or not. */
export function taintPatch(resourceVersion: string, taints: V1Taint[]): object[] {
  return [
    { op: 'test', path: '/metadata/resourceVersion', value: resourceVersion },
    { op: 'add', path: '/spec/taints', value: taints },
  ];
}
