// Finalizers added and removed with JSON Patch guarded by `test` operations (as kube-rs does): the API
// server does not deduplicate finalizers, so a patch computed from a stale read fails instead of
// clobbering someone else's list. It is then recomputed once from a fresh read (the informer cache
// often lags behind our own last write); a second failure goes back to the caller to retry.
import { CONTENT_TYPE, KubeApiError, type KubeClient } from './kube-client.js';
import type { KubeObject } from './informer.js';

export function hasFinalizer(obj: KubeObject, finalizer: string): boolean {
  return obj.metadata.finalizers?.includes(finalizer) ?? false;
}

function addPatch(current: readonly string[], finalizer: string): object[] | undefined {
  if (current.includes(finalizer)) return undefined;
  return current.length === 0
    ? [
        // A missing member tests equal to null: the list is still absent.
        { op: 'test', path: '/metadata/finalizers', value: null },
        { op: 'add', path: '/metadata/finalizers', value: [finalizer] },
      ]
    : [
        { op: 'test', path: '/metadata/finalizers', value: current },
        { op: 'add', path: '/metadata/finalizers/-', value: finalizer },
      ];
}

function removePatch(current: readonly string[], finalizer: string): object[] | undefined {
  const index = current.indexOf(finalizer);
  if (index < 0) return undefined;
  return [
    { op: 'test', path: `/metadata/finalizers/${index}`, value: finalizer },
    { op: 'remove', path: `/metadata/finalizers/${index}` },
  ];
}

/** Applies the patch `compute` derives from the finalizers; returns whether one was needed. */
async function patchFinalizers(
  client: KubeClient,
  path: string,
  obj: KubeObject,
  compute: (current: readonly string[]) => object[] | undefined,
  goneMeansDone: boolean,
): Promise<boolean> {
  let current = obj;
  for (let attempt = 0; ; attempt++) {
    const patch = compute(current.metadata.finalizers ?? []);
    if (!patch) return attempt > 0;
    try {
      await client.request({ method: 'PATCH', path, body: patch, contentType: CONTENT_TYPE.jsonPatch });
      return true;
    } catch (err) {
      if (!(err instanceof KubeApiError)) throw err;
      if (err.status === 404 && goneMeansDone) return true;
      if (err.status !== 422 || attempt > 0) throw err;
      current = await client.request<KubeObject>({ method: 'GET', path });
    }
  }
}

/** Adds `finalizer` to the object at `path`; returns whether it had to be added. */
export function addFinalizer(client: KubeClient, path: string, obj: KubeObject, finalizer: string): Promise<boolean> {
  return patchFinalizers(client, path, obj, (current) => addPatch(current, finalizer), false);
}

/** Removes `finalizer`; returns whether it was there. An object already gone counts as done. */
export function removeFinalizer(client: KubeClient, path: string, obj: KubeObject, finalizer: string): Promise<boolean> {
  return patchFinalizers(client, path, obj, (current) => removePatch(current, finalizer), true);
}
