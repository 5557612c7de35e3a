// Finalizers on the real API server: added once, guarded against concurrent changes by the JSON
// Patch test operation, and removing the last one lets a deletion complete.
import { randomBytes } from 'node:crypto';
import { resourcePath } from '../../../api/crd/paths.js';
import type { Model } from '../../../api/gen/crd-types.js';
import { sharedKubeconfig } from '../../../test/support/environment.js';
import { addFinalizer, removeFinalizer } from './finalizers.js';
import { KubeApiError, KubeClient } from './kube-client.js';

let client: KubeClient;
const name = `fin-${randomBytes(4).toString('hex')}`;
const path = resourcePath('models', name);

beforeAll(async () => {
  client = await KubeClient.fromKubeconfigFile(sharedKubeconfig());
  await client.request({
    method: 'POST',
    path: resourcePath('models'),
    body: {
      apiVersion: 'secai.io/v1alpha1',
      kind: 'Model',
      metadata: { name },
      spec: { source: { url: 'https://models.example/m.gguf' }, format: 'gguf', sha256: 'a'.repeat(64) },
    },
  });
});

afterAll(async () => {
  const current = await client.raw<Model>({ method: 'GET', path });
  if (current.status === 200 && current.body.metadata.finalizers?.length) {
    await client.request({ method: 'PATCH', path, body: { metadata: { finalizers: null } }, contentType: 'application/merge-patch+json' });
  }
  await client.raw({ method: 'DELETE', path });
  client.close();
});

const get = () => client.request<Model>({ method: 'GET', path });

it('adds a finalizer to an object that has none, once', async () => {
  expect(await addFinalizer(client, path, await get(), 'secai.io/a')).toBe(true);
  expect((await get()).metadata.finalizers).toEqual(['secai.io/a']);
  expect(await addFinalizer(client, path, await get(), 'secai.io/a')).toBe(false);
});

it('recomputes from a fresh read when its read was stale, keeping what others added', async () => {
  const stale = await get();
  await client.request({ method: 'PATCH', path, body: [{ op: 'add', path: '/metadata/finalizers/-', value: 'other.io/b' }], contentType: 'application/json-patch+json' });
  expect(await addFinalizer(client, path, stale, 'secai.io/c')).toBe(true);
  expect((await get()).metadata.finalizers).toEqual(['secai.io/a', 'other.io/b', 'secai.io/c']);
  // A stale read that misses our own earlier add: nothing to do once the fresh read shows it.
  expect(await addFinalizer(client, path, stale, 'secai.io/c')).toBe(true);
  expect((await get()).metadata.finalizers).toEqual(['secai.io/a', 'other.io/b', 'secai.io/c']);
});

it('removes by the index of a fresh read when the stale index is wrong', async () => {
  const stale = await get();
  await removeFinalizer(client, path, stale, 'secai.io/a');
  // In the stale read c is at index 2, which no longer exists.
  expect(await removeFinalizer(client, path, stale, 'secai.io/c')).toBe(true);
  expect((await get()).metadata.finalizers).toEqual(['other.io/b']);
});

it('never clobbers: a patch that fails twice is the caller\'s to retry', async () => {
  const stale = { metadata: { finalizers: ['not', 'what', 'is', 'there'] } };
  const failing = { ...client, request: async (spec: Parameters<KubeClient['request']>[0]) => {
    if (spec.method === 'GET') return { metadata: { finalizers: ['still', 'not', 'it'] } };
    throw new KubeApiError(422, { reason: 'Invalid' }, 'PATCH', path);
  } } as unknown as KubeClient;
  await expect(addFinalizer(failing, path, stale, 'secai.io/x')).rejects.toBeInstanceOf(KubeApiError);
});

it('lets a pending deletion complete when the last finalizer goes', async () => {
  await client.request({ method: 'PATCH', path, body: [{ op: 'replace', path: '/metadata/finalizers', value: ['secai.io/b'] }], contentType: 'application/json-patch+json' });
  await client.request({ method: 'DELETE', path });
  const deleting = await get();
  expect(deleting.metadata.deletionTimestamp).toBeDefined();
  expect(await removeFinalizer(client, path, deleting, 'secai.io/b')).toBe(true);
  expect((await client.raw({ method: 'GET', path })).status).toBe(404);
  expect(await removeFinalizer(client, path, deleting, 'secai.io/b')).toBe(true);
});
