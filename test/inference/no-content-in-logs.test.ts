// Prompts and responses never appear in logs, metrics, reports or audit events: a distinctive
// prompt goes through every path (completion, chat, streaming, refusals, a cancelled stream, a
// restart of the service), and everything the agent emitted is searched for it and for the answers.
import { randomBytes } from 'node:crypto';
import OpenAI from 'openai';
import { ServiceState } from '../../api/gen/proto/secai/fleet/v1/agent.js';
import { baseUrl, bearerToken, MapTrustedModels, ModelDir, servicePlan, startManager, waitFor } from './inference-fixtures.js';

const models = new ModelDir();

afterAll(() => models.remove());

it('keeps prompts and responses out of every log line, metric, report and audit event', async () => {
  const model = models.tiny();
  const auth = bearerToken();
  const fixture = await startManager(new MapTrustedModels(model));
  const marker = `zebra${randomBytes(6).toString('hex')}quartz`;
  const prompt = `remember the word ${marker} and repeat it`;
  const answers: string[] = [];
  const reports: unknown[] = [];
  try {
    const plan = servicePlan(model, auth.sha256, { queueDepth: 0 });
    await fixture.manager.reconcile({ services: [plan], revoked: new Set(), cordoned: false });
    await waitFor(() => fixture.manager.reports()[0]?.state === ServiceState.SERVICE_STATE_SERVING, 60_000, 'the service to serve');
    const client = new OpenAI({ apiKey: auth.token, baseURL: baseUrl(fixture.manager), maxRetries: 0 });

    const completion = await client.completions.create({ model: 'tiny', prompt, max_tokens: 24, temperature: 0 });
    answers.push(completion.choices[0]!.text);
    const chat = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'system', content: prompt }, { role: 'user', content: prompt }], max_tokens: 24 });
    answers.push(chat.choices[0]!.message.content ?? '');
    let streamed = '';
    for await (const chunk of await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: prompt }], max_tokens: 24, stream: true })) {
      streamed += chunk.choices[0]?.delta.content ?? '';
    }
    answers.push(streamed);
    // Refusals that carry the prompt in their body.
    await client.completions.create({ model: 'tiny', prompt, n: 3 }).catch(() => undefined);
    await client.completions.create({ model: `model-${marker}`, prompt }).catch(() => undefined);
    await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: prompt }], max_tokens: 4000 }).catch(() => undefined);
    // A cancelled stream, and a 429 while it runs (no queue).
    const abort = new AbortController();
    const long = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: prompt }], max_tokens: 1500, temperature: 0, stream: true }, { signal: abort.signal });
    await client.completions.create({ model: 'tiny', prompt, max_tokens: 2 }).catch(() => undefined);
    try {
      for await (const chunk of long) {
        void chunk;
        abort.abort();
      }
    } catch {
      // Cancelled.
    }
    reports.push(fixture.manager.reports());
    await fixture.manager.reconcile({ services: [plan], revoked: new Set([model.sha256]), cordoned: false });
    reports.push(fixture.manager.reports());
  } finally {
    await fixture.manager.stop();
  }

  const emitted = [
    ...fixture.logLines,
    await fixture.registry.metrics(),
    JSON.stringify(reports),
    JSON.stringify(fixture.audit.events),
  ].join('\n');
  // The capture works: the requests were logged.
  expect(fixture.logLines.filter((line) => line.includes('"msg":"inference request"')).length).toBeGreaterThanOrEqual(7);
  expect(emitted).toContain('secai_agent_inference_requests_total');

  expect(emitted).not.toContain(marker);
  expect(emitted).not.toContain('remember the word');
  const distinctive = answers.filter((answer) => answer.length >= 12);
  expect(distinctive.length).toBeGreaterThan(0);
  for (const answer of distinctive) {
    expect(emitted.includes(answer)).toBe(false);
    expect(emitted.includes(JSON.stringify(answer).slice(1, -1))).toBe(false);
  }
}, 90_000);
