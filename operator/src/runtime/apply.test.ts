// Status by server-side apply on the real API server: written through /status under our field
// manager, skipped when unchanged, and fields we stop setting are removed.
import { randomBytes } from 'node:crypto';
import { resourcePath } from '../../../api/crd/paths.js';
import type { Model, ModelStatus } from '../../../api/gen/crd-types.js';
import { sharedKubeconfig } from '../../../test/support/environment.js';
import { Applier, semanticallyEqual } from './apply.js';
import { KubeClient } from './kube-client.js';

let client: KubeClient;
let writes = 0;
const name = `ssa-${randomBytes(4).toString('hex')}`;
const path = resourcePath('models', name);
const target = { path, apiVersion: 'secai.io/v1alpha1', kind: 'Model', name };

beforeAll(async () => {
  client = await KubeClient.fromKubeconfigFile(sharedKubeconfig(), {
    onResponse: (method) => void (method === 'PATCH' && writes++),
  });
});

afterAll(async () => {
  await client.raw({ method: 'DELETE', path });
  client.close();
});

it('compares JSON regardless of key order and undefined members', () => {
  expect(semanticallyEqual({ a: 1, b: { c: [1, 2] }, d: undefined }, { b: { c: [1, 2] }, a: 1 })).toBe(true);
  expect(semanticallyEqual({ a: [1, 2] }, { a: [2, 1] })).toBe(false);
  expect(semanticallyEqual(undefined, {})).toBe(false);
});

it('creates with apply, then writes status through /status, skipping unchanged status', async () => {
  const applier = new Applier(client, 'secai-test');
  const created = await applier.apply<Model>(path, {
    apiVersion: 'secai.io/v1alpha1',
    kind: 'Model',
    metadata: { name },
    spec: { source: { url: 'https://models.example/m.gguf' }, format: 'gguf', sha256: 'b'.repeat(64) },
  });
  expect(created.metadata.managedFields?.some((f) => f.manager === 'secai-test' && f.operation === 'Apply')).toBe(true);

  const status: ModelStatus = { observedGeneration: 1, phase: 'Rejected', rejection: { node: 'n1', stage: 'hash', reason: 'DigestMismatch' } };
  writes = 0;
  expect(await applier.applyStatus(target, status, created)).toBe(true);
  const afterStatus = await client.request<Model>({ method: 'GET', path });
  expect(afterStatus.status).toEqual(status);
  expect(afterStatus.metadata.managedFields?.some((f) => f.manager === 'secai-test' && f.subresource === 'status')).toBe(true);

  // A cache that has not caught up with the write yet: the write is not repeated.
  expect(await applier.applyStatus(target, { ...status }, created)).toBe(false);
  expect(applier.observedStatus(path, created)).toEqual(status);
  expect(await applier.applyStatus(target, { ...status }, afterStatus)).toBe(false);
  expect(writes).toBe(1);

  const { rejection: _dropped, ...withoutRejection } = status;
  expect(await applier.applyStatus(target, { ...withoutRejection, phase: 'Pending' }, afterStatus)).toBe(true);
  const final = await client.request<Model>({ method: 'GET', path });
  expect(final.status).toEqual({ observedGeneration: 1, phase: 'Pending' });
  expect(final.spec.sha256).toBe('b'.repeat(64));
});
