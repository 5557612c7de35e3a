// Removing an annotation an administrator set as a request, once honoured: a JSON patch guarded by
// the value seen, so that a newer request made meanwhile is not lost (the test fails with 422).
import { CONTENT_TYPE, KubeApiError, type KubeClient } from '../runtime/kube-client.js';

export async function removeAnnotation(client: KubeClient, path: string, key: string, value: string): Promise<void> {
  const pointer = `/metadata/annotations/${key.replaceAll('~', '~0').replaceAll('/', '~1')}`;
  const res = await client.raw({
    method: 'PATCH',
    path,
    body: [
      { op: 'test', path: pointer, value },
      { op: 'remove', path: pointer },
    ],
    contentType: CONTENT_TYPE.jsonPatch,
  });
  if (res.status === 422 || res.status === 404) return;
  if (res.status < 200 || res.status >= 300) throw new KubeApiError(res.status, res.body as never, 'PATCH', path);
}
