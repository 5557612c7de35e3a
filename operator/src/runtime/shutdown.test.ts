// Graceful shutdown runs its steps last-registered first, once, and gives up at the deadline.
import pino from 'pino';
import { GracefulShutdown } from './shutdown.js';

const logger = pino({ level: 'silent' });

it('runs every step in reverse order once, despite a failing step, then exits with the code', async () => {
  const order: string[] = [];
  const exits: number[] = [];
  const shutdown = new GracefulShutdown({ logger, exit: (c) => exits.push(c) });
  shutdown.add('servers', () => void order.push('servers'));
  shutdown.add('lease', async () => {
    order.push('lease');
    throw new Error('release failed');
  });
  shutdown.add('controllers', async () => void order.push('controllers'));
  await Promise.all([shutdown.run('SIGTERM'), shutdown.run('SIGINT')]);
  expect(order).toEqual(['controllers', 'lease', 'servers']);
  expect(exits).toEqual([0]);
});

it('exits with 1 when the steps outlast the deadline', async () => {
  const exits: number[] = [];
  const shutdown = new GracefulShutdown({ logger, timeoutMs: 50, exit: (c) => exits.push(c) });
  shutdown.add('stuck', () => new Promise(() => {}));
  const started = Date.now();
  await shutdown.run('SIGTERM');
  expect(exits).toEqual([1]);
  expect(Date.now() - started).toBeLessThan(1000);
});
