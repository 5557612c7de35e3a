// The OCI pull across network namespaces the test creates: CNCF distribution's registry listens in
// one namespace, oras pushes and the node's quarantine face (secai-quarantine) pulls from another,
// joined by a veth pair with no default route; nothing of it is on the root namespace's loopback.
// The agent namespace carries the node's egress ruleset (agents/src/egress, real nftables) rendered
// from an egress plan: allowing the registry's address and port, the pull passes; allowing only
// another port, it is refused at Fetch.
import { createHash } from 'node:crypto';
import { mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { runCommand } from '../../agents/src/exec.js';
import { applyEgressTable } from '../../agents/src/egress/apply-egress.js';
import { renderEgressRuleset } from '../../agents/src/egress/render-egress-ruleset.js';
import { plan } from '../../agents/src/egress/testdata/golden-cases.js';
import { DOCKER_MODEL_CONFIG_TYPE, DOCKER_MODEL_GGUF } from '../../agents/src/quarantine/oci-source.js';
import { NetnsHarness, type NetnsProcess } from '../support/netns.js';
import { tinyModelBytes } from '../support/tiny-model.js';

const ROOT = resolve(import.meta.dirname, '../..');
const REGISTRY_BIN = process.env.TEST_ASSET_REGISTRY ?? join(ROOT, 'hack/bin/registry');
const ORAS = process.env.TEST_ASSET_ORAS ?? join(ROOT, 'hack/bin/oras');
const BIN = join(ROOT, 'bin/secai-quarantine.mjs');
const REGISTRY_ADDRESS = '10.231.7.1';
const AGENT_ADDRESS = '10.231.7.2';
const HOST = `${REGISTRY_ADDRESS}:5000`;

let dir: string;
let netns: NetnsHarness;
let agentNs: string;
let registry: NetnsProcess;
let digest: string;
const model = tinyModelBytes();
const sha256 = createHash('sha256').update(model).digest('hex');

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'oci-netns-'));
  netns = await NetnsHarness.create({ prefix: 'sfoci' });
  const registryNs = await netns.addNamespace('registry');
  agentNs = await netns.addNamespace('agent');
  await netns.connect({ namespace: registryNs, device: 'sfoci0', addresses: [`${REGISTRY_ADDRESS}/30`] }, { namespace: agentNs, device: 'sfoci1', addresses: [`${AGENT_ADDRESS}/30`] });
  await netns.assertNoDefaultRoute(agentNs);
  writeFileSync(join(dir, 'registry.yml'), `version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: ${join(dir, 'storage')}}}\nhttp: {addr: "${HOST}"}\n`);
  registry = netns.spawn(registryNs, REGISTRY_BIN, ['serve', join(dir, 'registry.yml')]);
  const probe = `fetch('http://${HOST}/v2/').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`;
  for (let i = 0; (await netns.run(agentNs, realpathSync(process.execPath), ['-e', probe])).code !== 0; i++) {
    if (i > 100) throw new Error(`the registry did not start: ${registry.stderr()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  writeFileSync(join(dir, 'model.gguf'), model);
  writeFileSync(join(dir, 'config.json'), '{"config":{"format":"gguf"}}');
  const pushed = await netns.runChecked(agentNs, ORAS, ['push', '--plain-http', '--format', 'json', '--config', `config.json:${DOCKER_MODEL_CONFIG_TYPE}`, `${HOST}/models/tiny:v1`, `model.gguf:${DOCKER_MODEL_GGUF}`], { cwd: dir });
  digest = (JSON.parse(pushed) as { digest: string }).digest;
}, 120_000);

afterAll(async () => {
  await registry?.kill();
  await netns?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function quarantine(allowedPort: number) {
  const rendered = renderEgressRuleset(plan([{ ip: REGISTRY_ADDRESS, ports: [[allowedPort]] }]), new Map(), { inboundTcpPorts: [] });
  expect((await applyEgressTable({ exec: runCommand, nftPath: 'nft', netns: agentNs }, rendered)).mismatches).toEqual([]);
  const { code, stdout } = await netns.run(agentNs, realpathSync(process.execPath), [BIN, `oci://${HOST}/models/tiny@${digest}`, '--sha256', sha256, '--allow-insecure-http', '--json'], { timeoutMs: 90_000 });
  return { code, verdict: JSON.parse(stdout) as { trusted: boolean; stage?: string; reason?: string; stages: { stage: string; details?: Record<string, unknown> }[] } };
}

it('pulls and trusts the GGUF from the registry in the other namespace, through an egress plan allowing it', async () => {
  const { code, verdict } = await quarantine(5000);
  expect({ code, trusted: verdict.trusted }).toEqual({ code: 0, trusted: true });
  expect(verdict.stages[0]).toMatchObject({ stage: 'Fetch', details: { layout: 'docker-model', registry: HOST } });
}, 90_000);

it('is refused at Fetch when the egress plan does not allow the registry port', async () => {
  const { code, verdict } = await quarantine(443);
  expect({ code, trusted: verdict.trusted, stage: verdict.stage, reason: verdict.reason }).toEqual({ code: 1, trusted: false, stage: 'Fetch', reason: 'TransferFailed' });
  expect(verdict.stages[0]!).toMatchObject({ message: expect.stringMatching(/EHOSTUNREACH/) as unknown });
}, 90_000);
