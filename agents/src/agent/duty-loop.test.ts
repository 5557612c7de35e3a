// The duty loop: resync after success, exponential backoff after failure, coalesced wakes, no
// overlapping runs, exclusive work between runs, and a stop that waits for the run in progress.
import { DutyLoop, nextDelayMs } from './duty-loop.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('nextDelayMs', () => {
  const backoff = { initialMs: 100, maxMs: 1_000 };
  it.each([
    [0, undefined, 5_000],
    [1, undefined, 100],
    [2, undefined, 200],
    [4, undefined, 800],
    [5, undefined, 1_000],
    [60, undefined, 1_000],
    [0, 250, 250],
    [0, 9_000, 5_000],
    [3, 50, 50],
  ])('after %i failures with requeue %p waits %i ms', (failures, requeue, expected) => {
    expect(nextDelayMs(failures, 5_000, backoff, requeue)).toBe(expected);
  });
});

it('runs again on its interval after a success, and reports the last success', async () => {
  let runs = 0;
  const loop = new DutyLoop({ name: 't', intervalMs: 30, run: async () => ({ ok: ++runs > 0 }) });
  loop.start();
  await sleep(200);
  await loop.stop();
  expect(runs).toBeGreaterThanOrEqual(4);
  expect(loop.snapshot()).toEqual(expect.objectContaining({ consecutiveFailures: 0, lastSuccessAt: expect.any(Number) }));
});

it('backs off exponentially while runs fail, and keeps the error', async () => {
  const at: number[] = [];
  const loop = new DutyLoop({
    name: 't',
    intervalMs: 10_000,
    backoff: { initialMs: 20, maxMs: 1_000 },
    run: async () => {
      at.push(Date.now());
      throw new Error('nft refused');
    },
  });
  loop.start();
  await sleep(400);
  await loop.stop();
  // 0, +20, +40, +80, +160: five runs within 400 ms, never the 10 s interval.
  expect(at.length).toBeGreaterThanOrEqual(4);
  expect(at.length).toBeLessThanOrEqual(6);
  const gaps = at.slice(1).map((t, i) => t - at[i]!);
  for (let i = 1; i < gaps.length; i++) expect(gaps[i]!).toBeGreaterThanOrEqual(gaps[i - 1]! * 1.5);
  expect(loop.snapshot()).toEqual(expect.objectContaining({ lastError: 'nft refused', consecutiveFailures: at.length }));
});

it('collapses wakes during a run into one more run, and never overlaps runs', async () => {
  let active = 0;
  let maxActive = 0;
  let runs = 0;
  const loop = new DutyLoop({
    name: 't',
    intervalMs: 60_000,
    run: async () => {
      active++;
      maxActive = Math.max(maxActive, active);
      runs++;
      await sleep(30);
      active--;
      return { ok: true };
    },
  });
  const first = loop.wake();
  await sleep(5);
  const woken = [loop.wake(), loop.wake(), loop.wake()];
  await Promise.all([first, ...woken]);
  expect(runs).toBe(2);
  expect(maxActive).toBe(1);
  await loop.stop();
});

it('resolves a wake only after a run that began after it', async () => {
  let value = 0;
  let seen = -1;
  const loop = new DutyLoop({
    name: 't',
    intervalMs: 60_000,
    run: async () => {
      seen = value;
      await sleep(20);
      return { ok: true };
    },
  });
  void loop.wake();
  await sleep(5);
  value = 7;
  await loop.wake();
  expect(seen).toBe(7);
  await loop.stop();
});

it('runs exclusive work between runs, not during one', async () => {
  const log: string[] = [];
  const loop = new DutyLoop({
    name: 't',
    intervalMs: 60_000,
    run: async () => {
      log.push('run-start');
      await sleep(30);
      log.push('run-end');
      return { ok: true };
    },
  });
  void loop.wake();
  await sleep(5);
  const value = await loop.exclusive(async () => {
    log.push('exclusive');
    return 42;
  });
  expect(value).toBe(42);
  expect(log).toEqual(['run-start', 'run-end', 'exclusive']);
  await loop.stop();
});

it('honours a requeue shorter than its interval', async () => {
  let runs = 0;
  const loop = new DutyLoop({ name: 't', intervalMs: 60_000, run: async () => ({ ok: true, requeueAfterMs: ++runs < 3 ? 20 : undefined }) });
  loop.start();
  await sleep(150);
  expect(runs).toBe(3);
  await loop.stop();
});

it('stops after the run in progress and runs no more', async () => {
  let runs = 0;
  let finished = false;
  const loop = new DutyLoop({
    name: 't',
    intervalMs: 10,
    run: async () => {
      runs++;
      await sleep(40);
      finished = true;
      return { ok: true };
    },
  });
  loop.start();
  await sleep(5);
  await loop.stop();
  expect(finished).toBe(true);
  const after = runs;
  await sleep(60);
  expect(runs).toBe(after);
  await expect(loop.wake()).resolves.toBeUndefined();
});
