// The HTTP endpoint serves the registry at /metrics and the named checks at /healthz and /readyz.
import pino from 'pino';
import { Counter, Registry } from 'prom-client';
import { startHealthServer } from './health-server.js';

it('serves metrics, liveness and readiness on loopback', async () => {
  const registry = new Registry();
  new Counter({ name: 'secai_example_total', help: 'example', registers: [registry] }).inc(3);
  let synced = false;
  const server = await startHealthServer({
    address: '127.0.0.1:0',
    registry,
    healthz: [{ name: 'ping', check: () => true }],
    readyz: [{ name: 'informers-synced', check: () => synced }],
    logger: pino({ level: 'silent' }),
  });
  try {
    const base = `http://127.0.0.1:${server.port}`;
    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('secai_example_total 3');
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const notReady = await fetch(`${base}/readyz`);
    expect(notReady.status).toBe(500);
    expect(await notReady.text()).toContain('[-]informers-synced failed');
    synced = true;
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    expect((await fetch(`${base}/nothing`)).status).toBe(404);
  } finally {
    await server.close();
  }
});
