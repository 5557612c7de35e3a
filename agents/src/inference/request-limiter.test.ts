import { LimiterClosedError, RequestLimiter, type Release } from './request-limiter.js';

describe('RequestLimiter', () => {
  it('admits up to the concurrency, queues up to the depth and refuses beyond', async () => {
    const limiter = new RequestLimiter(2, 1);
    const first = await limiter.tryAcquire();
    const second = await limiter.tryAcquire();
    const queued = limiter.tryAcquire();
    expect(queued).toBeInstanceOf(Promise);
    expect(limiter.tryAcquire()).toBeUndefined();
    expect([limiter.active, limiter.queued]).toEqual([2, 1]);
    first!();
    const third = await queued!;
    expect([limiter.active, limiter.queued]).toEqual([2, 0]);
    second!();
    third();
    expect(limiter.active).toBe(0);
  });

  it('hands slots to waiters in arrival order', async () => {
    const limiter = new RequestLimiter(1, 3);
    const holder = (await limiter.tryAcquire())!;
    const order: number[] = [];
    const waiters = [1, 2, 3].map((n) => limiter.tryAcquire()!.then((release) => (order.push(n), release)));
    holder();
    for (const waiter of waiters) (await waiter)();
    expect(order).toEqual([1, 2, 3]);
  });

  it('drops a waiter whose client goes away', async () => {
    const limiter = new RequestLimiter(1, 1);
    const holder = (await limiter.tryAcquire())!;
    const abort = new AbortController();
    const waiting = limiter.tryAcquire(abort.signal)!;
    abort.abort(new Error('client gone'));
    await expect(waiting).rejects.toThrow('client gone');
    expect(limiter.queued).toBe(0);
    holder();
    expect(limiter.active).toBe(0);
  });

  it('counts a release once however often it is called', async () => {
    const limiter = new RequestLimiter(1, 0);
    const release: Release = (await limiter.tryAcquire())!;
    release();
    release();
    expect(limiter.active).toBe(0);
    await limiter.tryAcquire();
    expect(limiter.active).toBe(1);
  });

  it('refuses waiters and newcomers once closed', async () => {
    const limiter = new RequestLimiter(1, 2);
    await limiter.tryAcquire();
    const waiting = limiter.tryAcquire()!;
    limiter.close();
    await expect(waiting).rejects.toBeInstanceOf(LimiterClosedError);
    await expect(limiter.tryAcquire()!).rejects.toBeInstanceOf(LimiterClosedError);
  });

  it('rejects nonsensical limits', () => {
    expect(() => new RequestLimiter(0, 1)).toThrow();
    expect(() => new RequestLimiter(1, -1)).toThrow();
  });
});
