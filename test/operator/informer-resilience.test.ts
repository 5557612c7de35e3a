// The informer survives what real clusters do to watches, losing no update: a partition during which
// objects change and etcd is compacted (the resumed watch gets 410 Gone and must relist, emitting
// the deletes it missed), and API server restarts with and without the watch cache.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import {
  compactEtcd,
  restartApiServer,
  startControlPlane,
  stopControlPlane,
  type ControlPlaneState,
} from '../../hack/control-plane/control-plane.js';
import { Informer, type KubeObject } from '../../operator/src/runtime/informer.js';
import { KubeClient } from '../../operator/src/runtime/kube-client.js';
import { HandlerMirror } from './support/mirror.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { eventually } from './support/wait.js';

const dir = mkdtempSync(join(tmpdir(), 'secai-op-informer-'));
const namespace = 'resilience';
const path = `/api/v1/namespaces/${namespace}/configmaps`;
let state: ControlPlaneState;
let admin: KubeClient;
let watched: KubeClient;
let proxy: TcpProxy;
let informer: Informer<KubeObject>;
let mirror: HandlerMirror<KubeObject>;

beforeAll(async () => {
  state = await startControlPlane({ dir: join(dir, 'cp'), disableWatchCache: true });
  admin = await KubeClient.fromKubeconfigFile(state.kubeconfig);
  await admin.request({ method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name: namespace } } });
  proxy = await TcpProxy.start(state.apiPort);
  watched = await KubeClient.fromKubeconfigFile(proxy.kubeconfigThrough(state.kubeconfig, join(dir, 'proxied-kubeconfig')));
  informer = new Informer<KubeObject>({
    client: watched,
    path,
    logger: pino({ level: 'silent' }),
    backoff: { initialMs: 100, maxMs: 1000 },
  });
  mirror = new HandlerMirror(informer);
}, 60_000);

afterAll(async () => {
  await informer?.stop();
  watched?.close();
  admin?.close();
  await proxy?.close();
  await stopControlPlane(join(dir, 'cp'));
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

const create = (name: string, value = '0') => admin.request({ method: 'POST', path, body: { metadata: { name }, data: { value } } });
const update = (name: string, value: string) =>
  admin.request({ method: 'PATCH', path: `${path}/${name}`, body: { data: { value } }, contentType: 'application/merge-patch+json' });
const remove = (name: string) => admin.request({ method: 'DELETE', path: `${path}/${name}` });

async function converged(what: string): Promise<void> {
  await eventually(async () => {
    const server = await HandlerMirror.serverState(admin, path);
    return JSON.stringify([...mirror.objects].sort()) === JSON.stringify([...server].sort());
  }, 30_000, what);
}

it('relists after a partition during which objects changed and etcd was compacted (410 Gone)', async () => {
  for (let i = 0; i < 5; i++) await create(`a-${i}`);
  informer.start();
  await informer.waitForSync(10_000);
  await converged('the first list');

  proxy.partition();
  for (let i = 0; i < 3; i++) await create(`b-${i}`);
  await update('a-0', 'changed');
  await update('a-1', 'changed');
  await remove('a-2');
  await remove('a-3');
  await compactEtcd(state);
  proxy.restore();

  await converged('the relist after 410');
  expect(informer.stats.expired).toBeGreaterThanOrEqual(1);
  expect(informer.stats.lists).toBeGreaterThanOrEqual(2);
  expect([...mirror.deleted].sort()).toEqual(['a-2', 'a-3']);
  expect(mirror.events).toEqual(expect.arrayContaining(['update a-0', 'update a-1', 'add b-0', 'add b-1', 'add b-2']));
}, 60_000);

it('resumes after API server restarts, with and without the watch cache', async () => {
  for (const watchCache of [true, false]) {
    const tag = watchCache ? 'cached' : 'direct';
    await create(`before-${tag}`);
    await update('a-0', `before-restart-${tag}`);
    await restartApiServer(state, { downMs: 1000, disableWatchCache: !watchCache });
    await create(`after-${tag}`);
    await update('a-1', `after-restart-${tag}`);
    await remove('a-4');
    await create('a-4', tag);
    await converged(`the cache after a restart (${tag})`);
    expect(mirror.objects.has(`after-${tag}`)).toBe(true);
  }
  expect(informer.stats.errors).toBeGreaterThanOrEqual(2);
}, 120_000);
