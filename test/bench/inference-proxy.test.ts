// The agent's API proxy adds under 2 ms at the median to a generation, measured side by side with
// direct calls to the same worker (see inference-proxy.ts).
import { measureInferenceProxyOverhead } from './inference-proxy.js';

it('adds under 2 ms at the median compared with calling the worker directly', async () => {
  const result = await measureInferenceProxyOverhead(200);
  expect(result.overheadMedianMs).toBeLessThan(2);
  expect(result.proxyMedianMs - result.directMedianMs).toBeLessThan(2);
  // Sanity: both paths generated (a generation takes real time).
  expect(result.directMedianMs).toBeGreaterThan(0.1);
}, 120_000);
