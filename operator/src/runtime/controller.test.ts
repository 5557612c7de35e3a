// The controller runs reconciles with controller-runtime's result handling: success forgets the
// key, an error retries with backoff, a TerminalError does not retry, requeueAfter polls; a key is
// never reconciled twice at once, and no more than maxConcurrentReconciles run together.
import pino from 'pino';
import { Registry } from 'prom-client';
import { ManualClock } from '../../../test/operator/support/manual-clock.js';
import { Controller, TerminalError, type Reconciler } from './controller.js';
import { RuntimeMetrics } from './metrics.js';

const logger = pino({ level: 'silent' });
const tick = () => new Promise((r) => setImmediate(r));

async function until(predicate: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (predicate()) return;
    await tick();
  }
  throw new Error(`timed out waiting for ${what}`);
}

function controller(reconcile: Reconciler, opts: { clock?: ManualClock; maxConcurrentReconciles?: number; metrics?: RuntimeMetrics } = {}) {
  return new Controller({ name: 'test', reconcile, logger, ...opts });
}

it('runs at most maxConcurrentReconciles at once and never one key twice at once', async () => {
  let running = 0;
  let peak = 0;
  const inFlight = new Set<string>();
  const overlaps: string[] = [];
  const release: (() => void)[] = [];
  const calls: string[] = [];
  const c = controller(
    async (key) => {
      calls.push(key);
      if (inFlight.has(key)) overlaps.push(key);
      inFlight.add(key);
      running++;
      peak = Math.max(peak, running);
      await new Promise<void>((r) => release.push(r));
      running--;
      inFlight.delete(key);
    },
    { maxConcurrentReconciles: 3 },
  );
  await c.start();
  for (const k of ['a', 'b', 'c', 'd', 'e']) c.enqueue(k);
  await until(() => running === 3, 'three workers');
  c.enqueue('a');
  c.enqueue('a');
  while (calls.length < 6 || running > 0) {
    await until(() => release.length > 0, 'a reconcile to release');
    release.shift()!();
    await tick();
  }
  expect(peak).toBe(3);
  expect(overlaps).toEqual([]);
  expect(calls.filter((k) => k === 'a')).toHaveLength(2);
  expect(calls.sort()).toEqual(['a', 'a', 'b', 'c', 'd', 'e']);
  await c.stop();
});

it('retries a failing key with growing backoff, then forgets it after a success', async () => {
  const clock = new ManualClock();
  let attempts = 0;
  const c = controller(
    async () => {
      attempts++;
      if (attempts <= 3) throw new Error('transient');
    },
    { clock },
  );
  await c.start();
  c.enqueue('k');
  await until(() => attempts === 1, 'first attempt');
  await tick();
  expect(c.queue.numRequeues('k')).toBe(1);
  clock.advance(5);
  await until(() => attempts === 2, 'second attempt after 5 ms');
  await tick();
  clock.advance(9);
  await tick();
  expect(attempts).toBe(2);
  clock.advance(1);
  await until(() => attempts === 3, 'third attempt after 10 ms');
  await tick();
  clock.advance(20);
  await until(() => attempts === 4, 'fourth attempt after 20 ms');
  await tick();
  expect(c.queue.numRequeues('k')).toBe(0);
  await c.stop();
});

it('does not retry a terminal error, and requeues after the asked delay', async () => {
  const clock = new ManualClock();
  const registry = new Registry();
  const calls: string[] = [];
  const c = controller(
    async (key) => {
      calls.push(key);
      if (key === 'bad') throw new TerminalError('invalid spec');
      if (key === 'poll') return { requeueAfterMs: 30_000 };
    },
    { clock, metrics: new RuntimeMetrics(registry) },
  );
  await c.start();
  c.enqueue('bad');
  c.enqueue('poll');
  await until(() => calls.length === 2, 'both keys');
  await tick();
  clock.advance(29_999);
  await tick();
  expect(calls).toEqual(['bad', 'poll']);
  clock.advance(1);
  await until(() => calls.length === 3, 'the poll requeue');
  clock.advance(3_600_000);
  await tick();
  expect(calls.filter((k) => k === 'bad')).toHaveLength(1);
  const text = await registry.metrics();
  expect(text).toContain('controller_runtime_reconcile_total{controller="test",result="error"} 1');
  expect(text).toContain('controller_runtime_reconcile_total{controller="test",result="requeue_after"}');
  expect(text).toContain('controller_runtime_terminal_reconcile_errors_total{controller="test"} 1');
  expect(text).toContain('controller_runtime_reconcile_errors_total{controller="test"} 1');
  expect(text).toContain('controller_runtime_max_concurrent_reconciles{controller="test"} 1');
  expect(text).toMatch(/controller_runtime_reconcile_time_seconds_count\{controller="test"\} [1-9]/);
  await c.stop();
});

it('stop waits for the reconcile in flight and hands out nothing more', async () => {
  let finish!: () => void;
  const calls: string[] = [];
  const c = controller(async (key) => {
    calls.push(key);
    await new Promise<void>((r) => (finish = r));
  });
  await c.start();
  c.enqueue('a');
  await until(() => calls.length === 1, 'a to start');
  c.enqueue('b');
  let stopped = false;
  const stopping = c.stop().then(() => (stopped = true));
  await tick();
  expect(stopped).toBe(false);
  finish();
  await stopping;
  expect(calls).toEqual(['a']);
});
