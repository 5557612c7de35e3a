// The retry delays: per-key exponential backoff from 5 ms to 1000 s, and an overall token bucket of
// 10 qps with a burst of 100 that applies across keys.
import { ManualClock } from '../../../test/operator/support/manual-clock.js';
import { defaultControllerRateLimiter, ItemExponentialBackoff, TokenBucket } from './rate-limiter.js';

describe('ItemExponentialBackoff', () => {
  it('doubles per failure of a key, from the base to the cap', () => {
    const limiter = new ItemExponentialBackoff(5, 1_000_000);
    const delays = Array.from({ length: 20 }, () => limiter.when('a'));
    expect(delays.slice(0, 5)).toEqual([5, 10, 20, 40, 80]);
    expect(delays[17]).toBe(655_360);
    expect(delays[18]).toBe(1_000_000);
    expect(delays[19]).toBe(1_000_000);
    expect(limiter.numRequeues('a')).toBe(20);
  });

  it('keeps keys apart and starts over after forget', () => {
    const limiter = new ItemExponentialBackoff(5, 1_000_000);
    limiter.when('a');
    limiter.when('a');
    expect(limiter.when('b')).toBe(5);
    limiter.forget('a');
    expect(limiter.numRequeues('a')).toBe(0);
    expect(limiter.when('a')).toBe(5);
  });

  it('never overflows past the cap after many failures', () => {
    const limiter = new ItemExponentialBackoff(5, 1_000_000);
    for (let i = 0; i < 2000; i++) limiter.when('a');
    expect(limiter.when('a')).toBe(1_000_000);
  });
});

describe('TokenBucket', () => {
  it('lets a burst through, then spaces calls at the rate', () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket(10, 100, clock);
    const burst = Array.from({ length: 100 }, () => bucket.when());
    expect(burst.every((d) => d === 0)).toBe(true);
    expect(bucket.when()).toBe(100);
    expect(bucket.when()).toBe(200);
    clock.advance(1000);
    // Ten tokens came back; two were owed.
    expect(bucket.when()).toBe(0);
  });

  it('refills no more than the burst', () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket(10, 100, clock);
    clock.advance(3_600_000);
    const delays = Array.from({ length: 101 }, () => bucket.when());
    expect(delays.filter((d) => d === 0)).toHaveLength(100);
  });
});

describe('the default controller rate limiter', () => {
  it('takes the longer of the key backoff and the bucket delay', () => {
    const clock = new ManualClock();
    const limiter = defaultControllerRateLimiter(clock);
    expect(limiter.when('a')).toBe(5);
    expect(limiter.when('a')).toBe(10);
    for (let i = 0; i < 98; i++) limiter.when(`k${i}`);
    // The bucket is empty now: a fresh key still waits for a token.
    expect(limiter.when('fresh')).toBe(100);
    limiter.forget('a');
    expect(limiter.numRequeues('a')).toBe(0);
  });
});
