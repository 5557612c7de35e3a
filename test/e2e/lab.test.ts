// The lab end to end: `lab up` brings a fleet of two nodes to convergence on this machine; from
// inside a node's namespace the allowed upstream connects, the blocked ones do not, and the model
// answers through the OpenAI-compatible API; a deleted egress table is healed and shown as drift;
// Prometheus answers the fleet-audit questions; no metric carries a prompt, a response, a token or
// a key; revocation stops serving; every node is attested from verified TPM quotes, and a PCR
// changed behind the event log's back is caught; `lab down` leaves nothing behind.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resourcePath } from '../../api/crd/paths.js';
import type { SecAINode } from '../../api/gen/crd-types.js';
import { readState, REPO_ROOT, restartApiServer, toolPath } from '../../hack/control-plane/control-plane.js';
import { labDown, labUp } from '../../hack/lab/lab.js';
import { labPaths } from '../../hack/lab/lab-layout.js';
import { LAB_MODEL, LAB_PCR7 } from '../../hack/lab/lab-samples.js';
import type { LabTopology } from '../../hack/lab/supervisor.js';
import { CONTENT_TYPE, KubeClient } from '../../operator/src/runtime/kube-client.js';

const NODES = 2;
let dir: string;
let topology: LabTopology;
let kube: KubeClient;

/** Runs a shell command inside a node's namespace; returns its exit status and output. */
function inNamespace(namespace: string, script: string, timeoutMs = 20_000): { status: number; output: string } {
  try {
    const output = execFileSync('ip', ['netns', 'exec', namespace, 'bash', '-c', script], { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
    return { status: 0, output };
  } catch (err) {
    const e = err as { status?: number; stdout?: string; stderr?: string };
    return { status: e.status ?? 1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

/** The OpenAI client, run inside a node's namespace (the endpoint is that namespace's loopback). */
function chat(namespace: string, url: string, tokenFile: string, prompt: string): { status: number; output: string } {
  const script = [
    `cd ${REPO_ROOT}`,
    `${process.execPath} --import tsx ${join(REPO_ROOT, 'test', 'e2e', 'chat-client.ts')} ${url} ${tokenFile} ${LAB_MODEL} ${JSON.stringify(prompt)}`,
  ].join(' && ');
  return inNamespace(namespace, script, 60_000);
}

async function promQuery(query: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const res = await fetch(`${topology.prometheus.url}/api/v1/query?query=${encodeURIComponent(query)}`);
  const body = (await res.json()) as { status: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
  if (body.status !== 'success') throw new Error(`query ${query} failed`);
  return body.data.result;
}

async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'secai-lab-e2e-'));
  ({ topology } = await labUp(dir, NODES, undefined, { dieWithParent: true }));
  kube = await KubeClient.fromKubeconfigFile(topology.kubeconfig);
}, 600_000);

afterAll(async () => {
  kube?.close();
  await labDown(dir);
  rmSync(dir, { recursive: true, force: true });
}, 180_000);

it('writes a topology that people and scripts can probe', () => {
  expect(topology.kubeconfig).toBe(join(dir, 'kubeconfig'));
  expect(topology.operator.metrics).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
  expect(topology.upstream.allowed.length).toBeGreaterThan(0);
  expect(topology.upstream.blocked.length).toBeGreaterThan(0);
  expect(topology.nodes).toHaveLength(NODES);
  for (const node of topology.nodes) {
    expect(existsSync(node.stateDir)).toBe(true);
    expect(existsSync(node.auditDir)).toBe(true);
    expect(node.inference).toMatchObject({ url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/), model: LAB_MODEL });
  }
});

it('lets each node reach the allowed upstream and nothing else', () => {
  for (const node of topology.nodes) {
    for (const { host, port } of topology.upstream.allowed) {
      expect(inNamespace(node.namespace, `exec 3<>/dev/tcp/${host}/${port}`).status).toBe(0);
    }
    for (const { host, port } of topology.upstream.blocked) {
      expect(inNamespace(node.namespace, `timeout 3 bash -c 'exec 3<>/dev/tcp/${host}/${port}'`).status).not.toBe(0);
    }
  }
});

it('reaches the via: Tor destination through the private Tor network: the upstream sees the exit, never a node', async () => {
  const { host, port, exit } = topology.upstream.tor;
  expect(topology.upstream.tor.consensusMs).toBeGreaterThan(0);
  for (const node of topology.nodes) {
    await eventually(`${node.name}'s Tor client`, async () => {
      const n = await kube.request<SecAINode>({ method: 'GET', path: resourcePath('secainodes', node.name) });
      return n.status?.tor?.state === 'Available' ? true : undefined;
    }, 120_000);
    expect(inNamespace(node.namespace, `exec 3<>/dev/tcp/${host}/${port} && head -1 <&3`).output).toContain(`ok ${port}`);
  }
  const log = readFileSync(join(dir, 'logs', 'upstream-servers.log'), 'utf8');
  const from = [...log.matchAll(new RegExp(`^connection ${port} from (\\S+)$`, 'gm'))].map((m) => m[1]);
  expect(from.length).toBeGreaterThanOrEqual(NODES);
  expect(new Set(from)).toEqual(new Set([exit]));
}, 180_000);

it('serves the model on every node through the OpenAI-compatible API with the token', () => {
  for (const node of topology.nodes) {
    const answer = chat(node.namespace, node.inference.url, node.inference.tokenFile, 'Say hello to the fleet.');
    expect(answer).toMatchObject({ status: 0 });
    expect(answer.output).toMatch(/^ANSWER /m);
  }
});

it('reports every node Ready, Compliant, Attested and AuditVerified in SecAINode status', async () => {
  const nodes = (await kube.request<{ items: SecAINode[] }>({ method: 'GET', path: resourcePath('secainodes') })).items;
  expect(nodes).toHaveLength(NODES);
  for (const node of nodes) {
    const status = Object.fromEntries((node.status?.conditions ?? []).map((c) => [c.type, c.status]));
    expect(status).toMatchObject({ Ready: 'True', Compliant: 'True', Attested: 'True', AuditVerified: 'True' });
    expect(node.status?.models?.find((m) => m.name === LAB_MODEL)?.state).toBe('Trusted');
    expect(node.status?.vault).toMatchObject({ encrypted: true, sealed: true, compliant: true });
    expect(node.status?.audit?.treeSize).toBeGreaterThan(0);
    // Attested from a verified quote: the TPM enrolled with its EK certificate, PCR 7 quoted and
    // explained by the boot event log, Secure Boot read from the log.
    expect(node.status?.attestation).toMatchObject({
      secureBoot: 'Enabled',
      secureBootVerified: true,
      enrolment: { ekCertificate: { issuer: 'CN=swtpm-localca', trusted: true } },
      quote: { pcrBank: 'sha256', pcrs: [{ index: 7, value: LAB_PCR7 }], replayedPcrs: [7] },
    });
  }
});

it('heals a deleted egress table: a Warning Event, Compliant=False, the repair read back, the blocked port refused again', async () => {
  const node = topology.nodes[0];
  const blocked = topology.upstream.blocked[0];
  if (!node || !blocked) throw new Error('no node or no blocked port');
  // Every Compliant reason the SecAINode passes through, as a watch sees each write.
  const watch = spawn(
    toolPath('kubectl'),
    ['--kubeconfig', topology.kubeconfig, 'get', 'secainode', node.name, '--watch', '--output-watch-events', '-o', 'jsonpath={.object.status.conditions[?(@.type=="Compliant")].reason}{"\\n"}'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let seen = '';
  watch.stdout.on('data', (chunk: Buffer) => (seen += chunk.toString()));
  try {
    await eventually('the watch to start', async () => (seen.includes('Compliant') ? true : undefined), 30_000);
    const tampered = Date.now();
    expect(inNamespace(node.namespace, 'nft delete table inet secai').status).toBe(0);
    const drift = await eventually('the repaired drift in status', async () => {
      const n = await kube.request<SecAINode>({ method: 'GET', path: resourcePath('secainodes', node.name) });
      const d = n.status?.duties?.find((x) => x.duty === 'egress')?.lastDrift;
      return d?.kind === 'table-missing' && d.repairedAt && Date.parse(d.detectedAt) >= Math.floor(tampered / 1000) * 1000 ? d : undefined;
    }, 30_000);
    // Status times are whole seconds: within the 5 s bar, with a second of rounding.
    expect(Date.parse(drift.repairedAt!) - tampered).toBeLessThan(6_000);
    const reasons = await eventually('the Events', async () => {
      const list = await kube.request<{ items: { reason: string; type: string; regarding: { name: string } }[] }>({ method: 'GET', path: '/apis/events.k8s.io/v1/namespaces/default/events' });
      const mine = list.items.filter((e) => e.regarding.name === node.name).map((e) => `${e.type}/${e.reason}`);
      return mine.includes('Warning/EgressDrift') && mine.includes('Normal/EgressDriftRepaired') ? mine : undefined;
    }, 30_000);
    expect(reasons).toEqual(expect.arrayContaining(['Warning/EgressDrift', 'Normal/EgressDriftRepaired']));
    await eventually('Compliant again', async () => (/EgressDrift\n(?:.*\n)*Compliant\n/.test(seen) ? true : undefined), 30_000);
    expect(seen.split('\n')).toContain('EgressDrift');
    expect(inNamespace(node.namespace, 'nft list table inet secai >/dev/null').status).toBe(0);
    expect(inNamespace(node.namespace, `timeout 3 bash -c 'exec 3<>/dev/tcp/${blocked.host}/${blocked.port}'`).status).not.toBe(0);
    const metrics = await (await fetch(node.metrics)).text();
    expect(metrics).toMatch(/secai_agent_drift_total\{duty="egress",kind="table-missing"\} [1-9]/);
  } finally {
    watch.kill();
  }
}, 120_000);

it('kubectl secai (found on PATH by the real kubectl) shows the fleet, explains a node and collects its evidence', () => {
  const pluginDir = mkdtempSync(join(tmpdir(), 'kubectl-plugins-'));
  try {
    symlinkSync(join(REPO_ROOT, 'bin', 'kubectl-secai.mjs'), join(pluginDir, 'kubectl-secai'));
    const env = { ...process.env, KUBECONFIG: topology.kubeconfig, PATH: `${pluginDir}:${join(REPO_ROOT, 'node_modules', '.bin')}:${process.env.PATH}` };
    const kubectl = (...args: string[]) => execFileSync(toolPath('kubectl'), args, { env, encoding: 'utf8', timeout: 60_000 });
    expect(kubectl('plugin', 'list')).toContain(join(pluginDir, 'kubectl-secai'));
    const status = kubectl('secai', 'status');
    expect(status).toContain(`NODES (${NODES})`);
    expect(status).toMatch(new RegExp(`^Compliant\\s+${NODES}\\s+0\\s+0$`, 'm'));
    expect(status).toMatch(new RegExp(`^${LAB_MODEL}\\s+Trusted\\s+${NODES}/${NODES}`, 'm'));
    const json = JSON.parse(kubectl('secai', 'status', '-o', 'json')) as { nodes: { total: number; failing: unknown[] } };
    expect(json.nodes).toMatchObject({ total: NODES, failing: [] });
    const why = kubectl('secai', 'why', topology.nodes[0]!.name);
    expect(why).toContain(`${topology.nodes[0]!.name} is Ready, Compliant, Attested and AuditVerified.`);
    // The drift healed earlier in this run is in the node's Events.
    expect(why).toMatch(/Warning\s+EgressDrift: egress: table-missing/);

    // Evidence: collected by the operator from the agent, signed, and verified offline.
    const file = join(pluginDir, 'evidence.json');
    const collected = kubectl('secai', 'evidence', topology.nodes[0]!.name, '-o', file, '-n', 'secai-system');
    expect(collected).toContain('the bundle verifies');
    expect(collected).toMatch(/OK\s+attestation: the TPM holding the AK the operator enrolled/);
    const offline = execFileSync(join(REPO_ROOT, 'bin', 'kubectl-secai.mjs'), ['verify', file], { env: { PATH: env.PATH }, encoding: 'utf8' });
    expect(offline).toMatch(/OK\s+auditLog: the node's log of \d+ entries/);
    expect(offline).toMatch(new RegExp(`OK\\s+models: 1 trusted model\\(s\\).*${LAB_MODEL}`));
    const bundle = JSON.parse(readFileSync(file, 'utf8')) as { parts: { plan: { rulesetDigest: string } } };
    bundle.parts.plan.rulesetDigest = '0'.repeat(64);
    writeFileSync(file, JSON.stringify(bundle));
    let failed = '';
    try {
      execFileSync(join(REPO_ROOT, 'bin', 'kubectl-secai.mjs'), ['verify', file], { env: { PATH: env.PATH }, encoding: 'utf8' });
    } catch (error) {
      failed = (error as { stdout: string }).stdout;
    }
    expect(failed).toMatch(/FAIL\s+plan: altered after the operator signed the bundle/);
  } finally {
    rmSync(pluginDir, { recursive: true, force: true });
  }
});

describe('Prometheus answers the fleet-audit questions (README queries)', () => {
  it('scrapes the operator and every agent', async () => {
    const up = await eventually('every target up', async () => {
      const result = await promQuery('up');
      return result.length === NODES + 1 && result.every((r) => r.value[1] === '1') ? result : undefined;
    }, 60_000);
    expect(up.map((r) => r.metric.job).sort()).toEqual([...Array(NODES).fill('secai-fleet-agent'), 'secai-fleet-operator'].sort());
  });

  it('which nodes are not compliant: none', async () => {
    const compliant = await eventually('fleet counts', async () => {
      const r = await promQuery('secai_nodes{condition="Compliant",status="True"}');
      return r.length > 0 && r[0]?.value[1] === String(NODES) ? r : undefined;
    }, 60_000);
    expect(compliant).toHaveLength(1);
    expect(await promQuery('secai_node_not_compliant')).toEqual([]);
  });

  it('which models are rejected where: none', async () => {
    expect(await promQuery('secai_model_rejected')).toEqual([]);
  });

  it('whose audit log failed verification: nobody', async () => {
    expect(await promQuery('secai_audit_log_failed')).toEqual([]);
  });
});

it('keeps prompts, responses, model bytes, tokens and keys out of every metrics endpoint', async () => {
  const node = topology.nodes[0];
  if (!node) throw new Error('no node');
  const prompt = 'ZEBRA-PROMPT-7f3a1c: describe the lighthouse';
  const answer = chat(node.namespace, node.inference.url, node.inference.tokenFile, prompt);
  expect(answer.status).toBe(0);
  const response = /^ANSWER (.*)$/m.exec(answer.output)?.[1] ?? '';
  const endpoints = [topology.operator.metrics, ...topology.nodes.map((n) => n.metrics)];
  const scraped = (await Promise.all(endpoints.map(async (url) => (await fetch(url)).text()))).join('\n');
  const labelValues = await (await fetch(`${topology.prometheus.url}/api/v1/label/__name__/values`)).text();
  const everything = `${scraped}\n${labelValues}`;
  const secrets = [
    prompt,
    'lighthouse',
    readFileSync(node.inference.tokenFile, 'utf8'),
    ...topology.nodes.map((n) => readFileSync(join(dir, 'nodes', n.name, 'token'), 'utf8')),
    readFileSync(join(dir, 'operator.kubeconfig'), 'utf8').match(/token: (\S+)/)?.[1] ?? 'operator-token',
  ];
  if (response.trim().length >= 12) secrets.push(response.trim());
  for (const secret of secrets) expect(everything).not.toContain(secret.trim());
  // Model bytes: a window of the model file's tensor data, and the node's private audit key.
  const model = readFileSync(join(dir, 'upstream', 'secai-tiny.gguf'));
  expect(everything).not.toContain(model.subarray(model.length - 64, model.length - 32).toString('hex'));
  for (const n of topology.nodes) {
    for (const file of readdirSync(n.auditDir).filter((f) => f.includes('key') && !f.endsWith('.pub'))) {
      const key = readFileSync(join(n.auditDir, file));
      expect(everything).not.toContain(key.toString('hex').slice(0, 32));
      expect(everything).not.toContain(key.toString('base64').slice(0, 24));
    }
  }
});

describe('Prometheus names what fails (README queries)', () => {
  it('which models are rejected where: a Model pinned to other bytes, on every node, at Integrity', async () => {
    const model = (await kube.request<{ spec: Record<string, unknown> }>({ method: 'GET', path: resourcePath('models', LAB_MODEL) })).spec;
    await kube.request({
      method: 'POST',
      path: resourcePath('models'),
      body: { apiVersion: 'secai.io/v1alpha1', kind: 'Model', metadata: { name: 'mispinned' }, spec: { ...model, sha256: 'b'.repeat(64), placement: { nodeSelector: {} } } },
    });
    const rejected = await eventually('both nodes to reject it in Prometheus', async () => {
      const r = await promQuery('secai_model_rejected{model="mispinned"}');
      return r.length === NODES ? r : undefined;
    }, 90_000);
    expect(rejected.map((r) => r.metric.node).sort()).toEqual(topology.nodes.map((n) => n.name).sort());
    expect(new Set(rejected.map((r) => `${r.metric.stage}/${r.metric.reason}`)).size).toBe(1);
    await kube.request({ method: 'DELETE', path: resourcePath('models', 'mispinned') });
  }, 120_000);

  it('which nodes are not compliant: a stricter vault policy makes every node non-compliant', async () => {
    await kube.request({
      method: 'POST',
      path: resourcePath('vaultpolicies'),
      body: {
        apiVersion: 'secai.io/v1alpha1',
        kind: 'VaultPolicy',
        metadata: { name: 'stricter-vault' },
        spec: { priority: 100, luks: { minPbkdfMemoryKiB: 1048576 }, tpm2: { mode: 'Required', pcrs: [7] } },
      },
    });
    const failing = await eventually('both nodes to be named non-compliant', async () => {
      const r = await promQuery('secai_node_not_compliant');
      return r.length === NODES ? r : undefined;
    }, 90_000);
    expect(failing.map((r) => r.metric.node).sort()).toEqual(topology.nodes.map((n) => n.name).sort());
    await kube.request({ method: 'DELETE', path: resourcePath('vaultpolicies', 'stricter-vault') });
    await eventually('the nodes to comply again', async () => ((await promQuery('secai_node_not_compliant')).length === 0 ? true : undefined), 90_000);
  }, 200_000);

  it('whose audit log failed: a node whose log and key are wiped names itself', async () => {
    const node = topology.nodes[1];
    if (!node) throw new Error('no second node');
    const agents = execFileSync('ip', ['netns', 'pids', node.namespace], { encoding: 'utf8' }).split(/\s+/).filter(Boolean);
    rmSync(node.auditDir, { recursive: true, force: true });
    for (const pid of agents) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    const failed = await eventually('the wiped node to be named', async () => {
      const r = await promQuery('secai_audit_log_failed');
      return r.length > 0 ? r : undefined;
    }, 90_000);
    expect(failed.map((r) => r.metric.node)).toEqual([node.name]);
    expect(failed[0]?.metric.reason).toBe('KeyChanged');
    // After the investigation an administrator re-baselines the node; its new log is trusted.
    await kube.request({
      method: 'PATCH',
      path: resourcePath('secainodes', node.name),
      contentType: CONTENT_TYPE.mergePatch,
      body: { metadata: { annotations: { 'secai.io/audit-rebaseline': 'e2e: key wiped on purpose' } } },
    });
    await eventually('the node to verify again', async () => ((await promQuery('secai_audit_log_failed')).length === 0 ? true : undefined), 90_000);
  }, 200_000);
});

it('converges again after the operator, an agent and the API server are killed mid-rollout', async () => {
  const node = topology.nodes[0];
  if (!node) throw new Error('no node');
  const opened = topology.upstream.blocked[0];
  if (!opened) throw new Error('no blocked port');
  expect(inNamespace(node.namespace, `timeout 3 bash -c 'exec 3<>/dev/tcp/${opened.host}/${opened.port}'`).status).not.toBe(0);
  // A policy change: the first blocked port becomes allowed; it rolls out canary first.
  const policy = await kube.request<{ spec: { allow: unknown[] } }>({ method: 'GET', path: resourcePath('egresspolicies', 'lab-egress') });
  await kube.request({
    method: 'PATCH',
    path: resourcePath('egresspolicies', 'lab-egress'),
    contentType: CONTENT_TYPE.mergePatch,
    body: { spec: { allow: [...policy.spec.allow, { ip: opened.host, ports: [{ port: opened.port }], description: 'e2e: opened mid-rollout' }] } },
  });
  // Kill the operator and node 0's agent (the lab restarts them, as a Deployment and systemd would),
  // and restart the API server.
  for (const line of execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' }).split('\n')) {
    if (line.includes(join(dir, 'operator.kubeconfig'))) process.kill(Number(line.trim().split(/\s+/)[0]), 'SIGKILL');
  }
  for (const pid of execFileSync('ip', ['netns', 'pids', node.namespace], { encoding: 'utf8' }).split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  const cluster = readState(join(dir, 'cluster'));
  if (!cluster) throw new Error('no control plane state');
  await restartApiServer(cluster, { downMs: 2000 });
  // The fleet converges again on the new policy, and the change is enforced in the kernel.
  await eventually('the fleet to converge on the change', async () => {
    const p = await kube.request<{ metadata: { generation: number }; status?: { observedGeneration?: number; nodes?: { enforced: number }; rollout?: { state: string } } }>({
      method: 'GET',
      path: resourcePath('egresspolicies', 'lab-egress'),
    });
    const nodes = (await kube.request<{ items: SecAINode[] }>({ method: 'GET', path: resourcePath('secainodes') })).items;
    const healthy = nodes.every((n) => ['Ready', 'Compliant'].every((t) => n.status?.conditions?.find((c) => c.type === t)?.status === 'True'));
    return p.status?.observedGeneration === p.metadata.generation && p.status?.nodes?.enforced === NODES && p.status.rollout?.state === 'Complete' && healthy ? true : undefined;
  }, 180_000);
  for (const n of topology.nodes) {
    expect(inNamespace(n.namespace, `timeout 3 bash -c 'exec 3<>/dev/tcp/${opened.host}/${opened.port}'`).status).toBe(0);
  }
}, 240_000);

it('stops serving a revoked model on every node and reports it contained', async () => {
  await kube.request({
    method: 'PATCH',
    path: resourcePath('models', LAB_MODEL),
    contentType: CONTENT_TYPE.mergePatch,
    body: { spec: { revoked: true, revokedReason: 'e2e revocation drill' } },
  });
  await eventually('every node to stop serving', async () => {
    for (const node of topology.nodes) {
      if (chat(node.namespace, node.inference.url, node.inference.tokenFile, 'still there?').status === 0) return undefined;
    }
    return true;
  }, 30_000);
  const nodes = await eventually('every node to report the model contained', async () => {
    const items = (await kube.request<{ items: SecAINode[] }>({ method: 'GET', path: resourcePath('secainodes') })).items;
    return items.every((n) => n.status?.models?.find((m) => m.name === LAB_MODEL)?.state === 'Contained') ? items : undefined;
  }, 30_000);
  expect(nodes).toHaveLength(NODES);
});

it('catches a PCR extended on a lab node\'s swtpm behind its event log (tpm2_pcrextend): Attested=False with the reason', async () => {
  const node = topology.nodes.at(-1)!;
  const tcti = `swtpm:path=${join(labPaths(dir).node(node.name).tpm, 'swtpm.sock')}`;
  execFileSync('tpm2_pcrextend', [`7:sha256=${'ab'.repeat(32)}`], { env: { ...process.env, TPM2TOOLS_TCTI: tcti }, timeout: 10_000 });
  const refused = await eventually('the node to fail attestation', async () => {
    const n = await kube.request<SecAINode>({ method: 'GET', path: resourcePath('secainodes', node.name) });
    const attested = n.status?.conditions?.find((c) => c.type === 'Attested');
    return attested?.status === 'False' ? attested : undefined;
  }, 60_000);
  expect(refused.reason).toBe('EventLogReplayMismatch');
  // Whose attestation failed, in PromQL (README).
  const series = await eventually('Prometheus to name the node', async () => {
    const result = await promQuery('secai_node_attestation_failed');
    return result.some((r) => r.metric.node === node.name) ? result : undefined;
  }, 60_000);
  expect(series.filter((r) => r.metric.node === node.name).map((r) => r.metric.reason)).toEqual(['EventLogReplayMismatch']);
  // The other nodes are attested (after the chaos test above, within a quote round or two).
  await eventually('the other nodes to be attested', async () => {
    const others = (await kube.request<{ items: SecAINode[] }>({ method: 'GET', path: resourcePath('secainodes') })).items.filter((n) => n.metadata.name !== node.name);
    return others.every((o) => o.status?.conditions?.find((c) => c.type === 'Attested')?.status === 'True') ? true : undefined;
  }, 60_000);
}, 90_000);

it('lab down removes every process, namespace and file it made', async () => {
  const pid = Number(readFileSync(join(dir, 'supervisor.pid'), 'utf8'));
  const namespaces = [topology.upstream.namespace, ...topology.nodes.map((n) => n.namespace)];
  await labDown(dir);
  const listed = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  for (const namespace of namespaces) expect(listed).not.toContain(namespace);
  expect(() => process.kill(pid, 0)).toThrow();
  expect(existsSync(dir)).toBe(false);
  const leftovers = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((line) => line.includes(dir));
  expect(leftovers).toEqual([]);
}, 180_000);
