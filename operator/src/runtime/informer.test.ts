// The informer against the real API server: list then watch, handlers and indexes, label
// selectors, resync, late handlers, and reconnecting after the server ends a watch or the watch goes
// silent, without losing an update.
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { sharedKubeconfig } from '../../../test/support/environment.js';
import { HandlerMirror } from '../../../test/operator/support/mirror.js';
import { delay, eventually } from '../../../test/operator/support/wait.js';
import { Informer } from './informer.js';
import { KubeClient } from './kube-client.js';

interface ConfigMap {
  apiVersion?: string;
  kind?: string;
  metadata: { name?: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string> };
  data?: Record<string, string>;
}

let client: KubeClient;
const namespace = `inf-${randomBytes(3).toString('hex')}`;
const path = `/api/v1/namespaces/${namespace}/configmaps`;
const logger = pino({ level: 'silent' });
const informers: Informer<ConfigMap>[] = [];

beforeAll(async () => {
  client = await KubeClient.fromKubeconfigFile(sharedKubeconfig());
  await client.request({ method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name: namespace } } });
});

afterAll(async () => {
  await Promise.all(informers.map((i) => i.stop()));
  await client.raw({ method: 'DELETE', path: `/api/v1/namespaces/${namespace}` });
  client.close();
});

function informer(opts: Partial<ConstructorParameters<typeof Informer<ConfigMap>>[0]> = {}): Informer<ConfigMap> {
  const inf = new Informer<ConfigMap>({ client, path, logger, backoff: { initialMs: 50, maxMs: 500 }, ...opts });
  informers.push(inf);
  return inf;
}

const create = (name: string, data: Record<string, string>, labels?: Record<string, string>) =>
  client.request<ConfigMap>({ method: 'POST', path, body: { metadata: { name, ...(labels ? { labels } : {}) }, data } });
const patch = (name: string, body: object) =>
  client.request<ConfigMap>({ method: 'PATCH', path: `${path}/${name}`, body, contentType: 'application/merge-patch+json' });
const remove = (name: string) => client.request({ method: 'DELETE', path: `${path}/${name}` });

it('lists existing objects, then sees adds, updates and deletes, with kind filled in and indexes kept', async () => {
  await create('pre-1', { team: 'red' });
  await create('pre-2', { team: 'blue' });
  const inf = informer().addIndex('team', (cm) => (cm.data?.team ? [cm.data.team] : []));
  const mirror = new HandlerMirror(inf);
  inf.start();
  await inf.waitForSync(10_000);
  expect(inf.hasSynced()).toBe(true);
  expect(mirror.events.sort()).toEqual(['add pre-1', 'add pre-2']);
  expect(inf.get(`${namespace}/pre-1`)?.kind).toBe('ConfigMap');
  expect(inf.byIndex('team', 'red').map((c) => c.metadata.name)).toEqual(['pre-1']);

  await create('live', { team: 'red' });
  await patch('pre-1', { data: { team: 'blue' } });
  await remove('pre-2');
  await eventually(() => mirror.deleted.has('pre-2') && mirror.objects.has('live'), 10_000, 'watch events');
  await eventually(() => inf.byIndex('team', 'blue').length === 1, 10_000, 'the index to follow the update');
  expect(inf.byIndex('team', 'red').map((c) => c.metadata.name)).toEqual(['live']);
  expect(inf.byIndex('team', 'blue').map((c) => c.metadata.name)).toEqual(['pre-1']);
  expect(mirror.objects).toEqual(await HandlerMirror.serverState(client, path));
  for (const name of ['pre-1', 'live']) await remove(name);
});

it('follows a label selector: an object relabelled out of it is deleted from the cache', async () => {
  const inf = informer({ labelSelector: 'fleet=yes' });
  const mirror = new HandlerMirror(inf);
  inf.start();
  await inf.waitForSync(10_000);
  await create('in', {}, { fleet: 'yes' });
  await create('out', {}, { fleet: 'no' });
  await eventually(() => mirror.objects.has('in'), 10_000, 'the selected object');
  await patch('in', { metadata: { labels: { fleet: 'no' } } });
  await eventually(() => mirror.deleted.has('in'), 10_000, 'the relabelled object to leave');
  expect(mirror.events).toEqual(['add in', 'delete in']);
  await remove('in');
  await remove('out');
});

it('replays cached objects to a late handler and on every resync', async () => {
  await create('replayed', {});
  const inf = informer({ resyncPeriodMs: 300 });
  inf.start();
  await inf.waitForSync(10_000);
  const late: string[] = [];
  inf.addHandler({ onAdd: (o) => late.push(`add ${o.metadata.name}`), onUpdate: (a, b) => late.push(`${a === b ? 'resync' : 'update'} ${b.metadata.name}`) });
  expect(late).toEqual(['add replayed']);
  await eventually(() => late.filter((e) => e === 'resync replayed').length >= 2, 5000, 'two resyncs');
  await remove('replayed');
});

it('resumes a watch that ran its course at once: no change waits for a backoff', async () => {
  // Watches of one second that each deliver events, with a backoff that would show as a pause of
  // 2.5–5 s after each of them.
  const inf = informer({ watchTimeoutSeconds: { min: 1, max: 1 }, backoff: { initialMs: 5000, maxMs: 5000 } });
  const seenAt = new Map<string, number>();
  inf.addHandler({ onAdd: (o) => seenAt.set(o.metadata.name ?? '', Date.now()) });
  inf.start();
  await inf.waitForSync(10_000);
  const createdAt = new Map<string, number>();
  for (let i = 0; i < 12; i++) {
    await create(`steady-${i}`, {});
    createdAt.set(`steady-${i}`, Date.now());
    await delay(300);
  }
  await eventually(() => seenAt.size === 12, 10_000, 'every add');
  const lags = [...createdAt].map(([name, at]) => seenAt.get(name)! - at);
  expect(inf.stats.watches).toBeGreaterThanOrEqual(3);
  expect(Math.max(...lags)).toBeLessThan(1500);
  for (const name of createdAt.keys()) await remove(name);
}, 30_000);

it('reconnects after the server ends each watch, and after a silent watch, losing nothing', async () => {
  const inf = informer({ watchTimeoutSeconds: { min: 1, max: 1 } });
  const mirror = new HandlerMirror(inf);
  const quiet = informer({ watchdogMs: 400 });
  const quietMirror = new HandlerMirror(quiet);
  inf.start();
  quiet.start();
  await Promise.all([inf.waitForSync(10_000), quiet.waitForSync(10_000)]);
  for (let i = 0; i < 12; i++) {
    await create(`churn-${i}`, { i: String(i) });
    if (i % 3 === 0) await patch(`churn-${i}`, { data: { i: `${i}-updated` } });
    if (i % 4 === 1) await remove(`churn-${i}`);
    await delay(250);
  }
  const server = await HandlerMirror.serverState(client, path);
  await eventually(() => JSON.stringify([...mirror.objects].sort()) === JSON.stringify([...server].sort()), 10_000, 'the cache to match');
  await eventually(() => JSON.stringify([...quietMirror.objects].sort()) === JSON.stringify([...server].sort()), 10_000, 'the quiet cache to match');
  expect(inf.stats.watches).toBeGreaterThanOrEqual(3);
  expect(inf.stats.lists).toBe(1);
  expect([...mirror.deleted].sort()).toEqual(['churn-1', 'churn-5', 'churn-9']);
  // Silence: the watchdog restarts the quiet watch, which still delivers what comes next.
  await eventually(() => quiet.stats.watchdogRestarts >= 2, 5000, 'watchdog restarts');
  await create('after-silence', {});
  await eventually(() => quietMirror.objects.has('after-silence'), 5000, 'the event after the silence');
  expect(quiet.stats.lists).toBe(1);
}, 30_000);
