// The work queue hands out each key once at a time, merges repeated adds, delays and rate-limits
// retries, and drains in-flight work on shutdown.
import { Registry } from 'prom-client';
import { ManualClock } from '../../../test/operator/support/manual-clock.js';
import { RuntimeMetrics } from './metrics.js';
import { ItemExponentialBackoff } from './rate-limiter.js';
import { WorkQueue } from './workqueue.js';

function queue(clock = new ManualClock(), metrics?: RuntimeMetrics) {
  return new WorkQueue({ name: 'test', clock, rateLimiter: new ItemExponentialBackoff(5, 1_000_000), ...(metrics ? { metrics } : {}) });
}

/** Resolves whether `promise` settles within the current microtask flush. */
async function settled<T>(promise: Promise<T>): Promise<{ done: boolean; value?: T }> {
  let state: { done: boolean; value?: T } = { done: false };
  void promise.then((value) => (state = { done: true, value }));
  await new Promise((r) => setImmediate(r));
  return state;
}

it('hands keys out in order and merges duplicate adds', async () => {
  const q = queue();
  q.add('a');
  q.add('b');
  q.add('a');
  expect(q.len()).toBe(2);
  expect(await q.get()).toBe('a');
  expect(await q.get()).toBe('b');
  expect(q.len()).toBe(0);
});

it('never hands out a key that is being processed; an add meanwhile requeues it on done', async () => {
  const q = queue();
  q.add('a');
  const key = await q.get();
  q.add('a');
  q.add('a');
  expect(q.len()).toBe(0);
  const pending = q.get();
  expect((await settled(pending)).done).toBe(false);
  q.done(key!);
  // The two adds during processing yield one more round, no more.
  expect(await pending).toBe('a');
  expect(q.len()).toBe(0);
  q.done('a');
  expect(q.len()).toBe(0);
});

it('wakes a waiting get when a key arrives', async () => {
  const q = queue();
  const next = q.get();
  expect((await settled(next)).done).toBe(false);
  q.add('x');
  expect(await next).toBe('x');
});

it('adds after a delay, keeping the earliest of several delays', async () => {
  const clock = new ManualClock();
  const q = queue(clock);
  q.addAfter('a', 1000);
  q.addAfter('a', 300);
  q.addAfter('a', 5000);
  clock.advance(299);
  expect(q.len()).toBe(0);
  clock.advance(1);
  expect(q.len()).toBe(1);
  expect(await q.get()).toBe('a');
  q.done('a');
  clock.advance(10_000);
  expect(q.len()).toBe(0);
});

it('retries with per-key exponential backoff until forgotten', () => {
  const clock = new ManualClock();
  const q = queue(clock);
  q.addRateLimited('a');
  clock.advance(4);
  expect(q.len()).toBe(0);
  clock.advance(1);
  expect(q.len()).toBe(1);
  expect(q.numRequeues('a')).toBe(1);
  q.addRateLimited('b');
  q.addRateLimited('b');
  expect(q.numRequeues('b')).toBe(2);
  q.forget('b');
  expect(q.numRequeues('b')).toBe(0);
});

it('on shutdown wakes waiters, drops queued and delayed keys, and drains what is in flight', async () => {
  const clock = new ManualClock();
  const q = queue(clock);
  q.add('busy');
  const busy = await q.get();
  q.add('queued');
  q.addAfter('later', 1000);
  const drained = q.shutdownWithDrain();
  expect((await settled(drained)).done).toBe(false);
  expect(await q.get()).toBeUndefined();
  q.add('ignored');
  expect(q.len()).toBe(0);
  q.done(busy!);
  await drained;
  clock.advance(2000);
  expect(q.len()).toBe(0);
  expect(clock.pendingTimers()).toBe(0);
});

it('reports controller-runtime workqueue metrics', async () => {
  const clock = new ManualClock();
  const registry = new Registry();
  const q = queue(clock, new RuntimeMetrics(registry));
  q.add('a');
  q.add('a');
  q.add('b');
  clock.advance(250);
  const a = await q.get();
  clock.advance(1500);
  const text = await registry.metrics();
  expect(text).toContain('workqueue_adds_total{name="test",controller="test"} 2');
  expect(text).toContain('workqueue_depth{name="test",controller="test"} 1');
  expect(text).toContain('workqueue_unfinished_work_seconds{name="test",controller="test"} 1.5');
  expect(text).toContain('workqueue_longest_running_processor_seconds{name="test",controller="test"} 1.5');
  expect(text).toMatch(/workqueue_queue_duration_seconds_sum\{name="test",controller="test"\} 0\.25/);
  q.done(a!);
  q.addRateLimited('c');
  const after = await registry.metrics();
  expect(after).toMatch(/workqueue_work_duration_seconds_sum\{name="test",controller="test"\} 1\.5/);
  expect(after).toContain('workqueue_retries_total{name="test",controller="test"} 1');
  q.shutdown();
});
