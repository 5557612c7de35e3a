// Remote attestation (issue 14, points 1 and 2, and its bad input), against the real API server,
// with agents on real software TPMs (swtpm manufactured with EK certificates by a local CA) behind
// the real channel: the operator enrols each TPM by credential activation, quotes it over fresh
// nonces, replays its boot event log, and only then says Attested=True. A compromised node (the
// `tamper` hook) that replays an old quote, signs with another node's AK, forges a PCR value, sends
// a malformed or oversized log, a wrong nonce or signature, presents an AK of the wrong type or
// another TPM's keys, or whose TPM refuses, gets its reason on the SecAINode and never True; a PCR
// extended on the TPM is caught; the operator keeps running throughout.
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { CommandResult } from '../../api/gen/proto/secai/fleet/v1/agent.js';
import { TOKEN_AUDIENCE } from '../../api/proto/protocol.js';
import { tpm2ToolsAttestation } from '../../agents/src/attestation/tpm-attestation.js';
import { runChecked, runCommand } from '../../agents/src/exec.js';
import { ATTESTATION_REENROL_ANNOTATION, ATTESTATION_REQUEST_ANNOTATION } from '../../operator/src/attestation/attestation-verifier.js';
import { parseCertificateBundle } from '../../operator/src/attestation/enrolment.js';
import { startOperator, type OperatorHandle } from '../../operator/src/cmd/operator.js';
import { expectedPcrs, measureOnTpm, simulatedFirmwareBoot, writeEventLog } from '../attestation/event-log-writer.js';
import { startSwtpm, type Swtpm } from '../vault/swtpm.js';
import type { ChannelEndpoint } from './support/audit-agent.js';
import { AttestingAgent, type Tamper } from './support/attesting-agent.js';
import { condition, FleetEnv, OPERATOR_NAMESPACE, type KubeObjectLike } from './support/fleet-env.js';
import { delay, eventually } from './support/wait.js';

const SERVER_NAME = `secai-operator.${OPERATOR_NAMESPACE}.svc`;
const INTERVAL_MS = 3_000;
let env: FleetEnv;
let operator: OperatorHandle;
let dir: string;
let endpoint: ChannelEndpoint;
let ekCa: string;
const agents: AttestingAgent[] = [];
const swtpms: Swtpm[] = [];

async function start(): Promise<OperatorHandle> {
  return startOperator({
    kubeconfig: env.kubeconfig,
    namespace: OPERATOR_NAMESPACE,
    metricsAddress: '127.0.0.1:0',
    logger: pino({ level: process.env.OPERATOR_LOG_LEVEL ?? 'silent' }),
    settings: { statusRefreshMs: 60_000, agentReconnectGraceMs: 2_000 },
    informerOptions: { backoff: { initialMs: 100, maxMs: 2000 } },
    attestation: { intervalMs: INTERVAL_MS, ekCas: parseCertificateBundle(ekCa) },
    channel: {
      listen: [`unix://${join(dir, 'channel.sock')}`],
      dnsNames: [SERVER_NAME],
      tlsSecret: 'secai-channel-tls',
      caConfigMap: 'secai-agent-ca',
      agentServiceAccount: 'secai-agent',
      heartbeatSeconds: 2,
      version: 'test',
    },
  });
}

interface TestNode {
  name: string;
  swtpm: Swtpm;
  tokenFile: string;
  eventLog: string;
  workDir: string;
  pcr7: string;
}

/** A software TPM booted through simulated firmware (its PCRs extended as the written log says). */
async function bootTpm(name: string, caDir = join(dir, 'ca')): Promise<{ swtpm: Swtpm; eventLog: string; pcr7: string }> {
  const swtpm = await startSwtpm(join(dir, name, 'tpm'), { ekCertificate: { caDir } });
  swtpms.push(swtpm);
  const boot = simulatedFirmwareBoot({ secureBoot: true, tag: name });
  await measureOnTpm(swtpm.tcti, boot);
  const eventLog = join(dir, name, 'binary_bios_measurements');
  writeFileSync(eventLog, writeEventLog(boot));
  return { swtpm, eventLog, pcr7: expectedPcrs(boot, 0x000b).get(7)!.toString('hex') };
}

/** A fleet Node with an agent Pod, a Pod-bound token and a booted TPM. */
async function enrol(name: string, labels: Record<string, string> = {}): Promise<TestNode> {
  await env.createNode(name, { 'secai.io/node': 'true', ...labels });
  const pod = await env.admin.request<{ metadata: { uid: string } }>({
    method: 'POST',
    path: `/api/v1/namespaces/${OPERATOR_NAMESPACE}/pods`,
    body: { metadata: { name: `agent-${name}` }, spec: { nodeName: name, serviceAccountName: 'secai-agent', containers: [{ name: 'agent', image: 'secai/agent:test' }] } },
  });
  const token = await env.admin.request<{ status: { token: string } }>({
    method: 'POST',
    path: `/api/v1/namespaces/${OPERATOR_NAMESPACE}/serviceaccounts/secai-agent/token`,
    body: { spec: { audiences: [TOKEN_AUDIENCE], expirationSeconds: 3600, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: `agent-${name}`, uid: pod.metadata.uid } } },
  });
  mkdirSync(join(dir, name, 'work'), { recursive: true });
  const tokenFile = join(dir, name, 'token');
  writeFileSync(tokenFile, token.status.token);
  await eventually(() => env.get('secainodes', name), 15_000, `the SecAINode of ${name}`);
  const booted = await bootTpm(name);
  return { name, tokenFile, workDir: join(dir, name, 'work'), ...booted };
}

function agentFor(n: TestNode, tamper?: Tamper, tcti = n.swtpm.tcti): AttestingAgent {
  const agent = AttestingAgent.start({ node: n.name, tcti, workDir: n.workDir, eventLogPath: n.eventLog, tokenFile: n.tokenFile, endpoint, ...(tamper ? { tamper } : {}) });
  agents.push(agent);
  return agent;
}

interface AttestationStatus {
  secureBoot: string;
  secureBootVerified?: boolean;
  enrolment?: { ekFingerprint: string; akName: string; akPublic: string; ekCertificate?: { issuer: string; trusted: boolean } };
  quote?: { pcrBank: string; pcrs: { index: number; value: string }[]; eventLogEvents?: number; replayedPcrs?: number[] };
  failure?: string;
  mismatchedPcrs?: number[];
}
const attestationOf = (n: KubeObjectLike | undefined) => n?.status?.attestation as AttestationStatus | undefined;

async function attested(name: string, status: 'True' | 'False', reason?: string, timeoutMs = 20_000): Promise<KubeObjectLike> {
  return eventually(async () => {
    const n = await env.get('secainodes', name);
    const c = condition(n, 'Attested');
    return c?.status === status && (reason === undefined || c.reason === reason) ? n : undefined;
  }, timeoutMs, `${name} Attested=${status}${reason ? ` (${reason})` : ''}`);
}

async function metrics(): Promise<string> {
  return (await fetch(`http://127.0.0.1:${operator.metricsPort}/metrics`)).text();
}
const metric = (text: string, name: string, label: string) => Number(new RegExp(`^${name}\\{${label}\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'secai-attest-op-'));
  // The fleet's EK CA: the local CA that manufactures every test TPM (made with the first one).
  const first = await startSwtpm(join(dir, 'ca-seed'), { ekCertificate: { caDir: join(dir, 'ca') } });
  swtpms.push(first);
  ekCa = first.ekCa!;
  env = await FleetEnv.start('attest');
  await env.admin.request({ method: 'POST', path: `/api/v1/namespaces/${OPERATOR_NAMESPACE}/serviceaccounts`, body: { metadata: { name: 'secai-agent' } } });
  operator = await start();
  await operator.leading;
  const ca = await eventually(async () => {
    const cm = await env.admin.raw<{ data?: Record<string, string> }>({ method: 'GET', path: `/api/v1/namespaces/${OPERATOR_NAMESPACE}/configmaps/secai-agent-ca` });
    return cm.status === 200 ? cm.body.data?.['ca.crt'] : undefined;
  }, 30_000, 'the agent CA bundle');
  writeFileSync(join(dir, 'ca.crt'), ca);
  endpoint = { address: operator.channelAddresses()[0]!, caFile: join(dir, 'ca.crt'), serverName: SERVER_NAME };
}, 90_000);

afterAll(async () => {
  for (const a of agents) a.stop();
  await operator?.stop();
  await env?.stop();
  for (const t of swtpms) await t.stop();
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

const extend = (swtpm: Swtpm, pcr: number, what: string) =>
  runChecked(runCommand, 'tpm2_pcrextend', [`${pcr}:sha256=${createHash('sha256').update(what).digest('hex')}`], { env: { ...process.env, TPM2TOOLS_TCTI: swtpm.tcti }, timeoutMs: 10_000 });

let honest: TestNode;

it('enrols a node\'s TPM by credential activation and attests it from verified quotes, on an interval and on demand', async () => {
  honest = await enrol('attest-honest');
  const started = Date.now();
  const agent = agentFor(honest);
  const n = await attested(honest.name, 'True');
  const elapsed = Date.now() - started;
  const a = attestationOf(n)!;
  expect(a.enrolment).toMatchObject({ ekFingerprint: expect.stringMatching(/^[0-9a-f]{64}$/), akName: expect.stringMatching(/^000b[0-9a-f]{64}$/), ekCertificate: { issuer: 'CN=swtpm-localca', trusted: true } });
  expect(a.quote).toMatchObject({ pcrBank: 'sha256', eventLogEvents: expect.any(Number), replayedPcrs: [0, 2, 4, 7] });
  expect(a.quote!.pcrs.map((p) => p.index)).toEqual([0, 2, 4, 7]);
  expect(a.quote!.pcrs.find((p) => p.index === 7)?.value).toBe(honest.pcr7);
  expect(a).toMatchObject({ secureBoot: 'Enabled', secureBootVerified: true });
  expect(condition(n, 'Attested')?.message).toContain('verified with the enrolled AK');
  expect(agent.commands.slice(0, 3)).toEqual(['readAttestationIdentity', 'activateCredential', 'quote']);
  console.log(`enrolment and first verified quote: ${elapsed} ms from the agent's start (TLS connect, token review, identity, credential activation, quote, status write)`);

  // On the interval, and at once on demand (right after an interval's quote, well before the next).
  const quotes = () => agent.commands.filter((c) => c === 'quote').length;
  await eventually(() => quotes() >= 3, 15_000, 'three quotes');
  const seen = quotes();
  await eventually(() => quotes() > seen, 5_000, 'the next interval\'s quote');
  const before = metric(await metrics(), 'secai_attestation_quotes_total', 'result="verified"');
  await env.admin.request({
    method: 'PATCH',
    path: `/apis/secai.io/v1alpha1/secainodes/${honest.name}`,
    body: { metadata: { annotations: { [ATTESTATION_REQUEST_ANNOTATION]: 'now-1' } } },
    contentType: 'application/merge-patch+json',
  });
  const asked = Date.now();
  await eventually(async () => metric(await metrics(), 'secai_attestation_quotes_total', 'result="verified"') > before, 5_000, 'an on-demand quote');
  expect(Date.now() - asked).toBeLessThan(INTERVAL_MS / 2);
  const histogram = (kind: string) => {
    const m = new RegExp(`^secai_attestation_round_seconds_sum\\{kind="${kind}"\\} ([0-9.e-]+)\\n(?:.*\\n)*?secai_attestation_round_seconds_count\\{kind="${kind}"\\} (\\d+)`, 'm').exec(text);
    return m ? `${((Number(m[1]) / Number(m[2])) * 1000).toFixed(1)} ms mean over ${m[2]}` : 'none';
  };
  const text = await metrics();
  console.log(`operator round trips: enrolment (identity + credential activation) ${histogram('enrolment')}; quote (nonce to verified answer, event log replayed) ${histogram('quote')}`);
  // Reconnecting presents the same keys: no second enrolment.
  expect(agent.commands.filter((c) => c === 'activateCredential')).toHaveLength(1);
}, 60_000);

it('refuses a PCR extended behind the event log\'s back (tpm2_pcrextend on the swtpm)', async () => {
  await extend(honest.swtpm, 7, 'a bootkit measured but not logged');
  const n = await attested(honest.name, 'False', 'EventLogReplayMismatch');
  expect(attestationOf(n)?.failure).toContain('PCR 7');
  await eventually(async () => (await env.events(honest.name)).some((e) => e.reason === 'AttestationFailed' && e.note.startsWith('EventLogReplayMismatch')), 10_000, 'the AttestationFailed Event');
});

it('refuses a changed PCR that the log explains but the VaultPolicy does not expect (PcrMismatch)', async () => {
  const node = await enrol('attest-expected', { attest: 'expected' });
  await env.apply('vaultpolicies', {
    kind: 'VaultPolicy',
    metadata: { name: 'attest-expected' },
    spec: { nodeSelector: { matchLabels: { attest: 'expected' } }, luks: {}, tpm2: { mode: 'Required', pcrBank: 'sha256', pcrs: [7] }, attestation: { expectedPcrs: [{ index: 7, value: node.pcr7 }, { index: 16, value: '0'.repeat(64) }] } },
  });
  await eventually(() => operator.plans.current(node.name)?.plan.vault?.expectedPcrs.length === 2, 15_000, 'the expected PCRs in the plan');
  agentFor(node);
  const good = await attested(node.name, 'True');
  expect(attestationOf(good)?.quote?.pcrs.map((p) => p.index)).toEqual([7, 16]);
  await extend(node.swtpm, 16, 'a debug measurement');
  const bad = await attested(node.name, 'False', 'PcrMismatch');
  expect(condition(bad, 'Attested')?.message).toContain('quoted PCRs 16');
  expect(attestationOf(bad)?.mismatchedPcrs).toEqual([16]);
}, 60_000);

/** Answers a quote command with a modified copy of the honest answer. */
const onQuote = (change: (quote: Extract<CommandResult['body'], { $case: 'quote' }>['value']) => void): Tamper => async (command, honestAnswer) => {
  const answer = await honestAnswer();
  if (command.body?.$case !== 'quote' || answer.body?.$case !== 'quote') return answer;
  change(answer.body.value);
  return answer;
};

describe('a compromised node is refused with its reason, never Attested=True', () => {
  let other: { swtpm: Swtpm } | undefined;
  const otherTpm = async () => (other ??= await bootTpm('attest-other-tpm'));

  const cases: [string, string, (n: TestNode) => Promise<Tamper>, string][] = [
    ['a wrong nonce', 'attest-nonce', async () => async (command, answer) => {
      if (command.body?.$case === 'quote') command.body.value.nonce = randomBytes(32);
      return answer();
    }, 'NonceMismatch'],
    ['a signature altered by one bit', 'attest-signature', async () => onQuote((q) => void (q.signature[q.signature.length - 1]! ^= 1)), 'QuoteSignatureInvalid'],
    ['a quote signed with another node\'s AK', 'attest-foreign-ak', async (n) => {
      // This node's TPM answers the enrolment; another node's TPM signs the quotes.
      const otherQuotes = tpm2ToolsAttestation({ tcti: (await otherTpm()).swtpm.tcti, workDir: n.workDir });
      await otherQuotes.identity();
      return async (command, answer) => {
        if (command.body?.$case !== 'quote') return answer();
        const honestAnswer = await answer();
        const q = await otherQuotes.quote(Buffer.from(command.body.value.nonce), command.body.value.pcrBank, command.body.value.pcrs);
        if (honestAnswer.body?.$case === 'quote') Object.assign(honestAnswer.body.value, { attest: q.attest, signature: q.signature, pcrValues: q.pcrValues });
        return honestAnswer;
      };
    }, 'QuoteSignatureInvalid'],
    ['a forged PCR value in the report (the golden PCR 7 of a Secure Boot boot, on a TPM booted without)', 'attest-forged-pcr', async (n) => {
      await extend(n.swtpm, 7, 'secure boot off');
      const golden = Buffer.from(n.pcr7, 'hex');
      return onQuote((q) => void (q.pcrValues = q.pcrValues.map((p) => (p.index === 7 ? { index: 7, value: golden } : p))));
    }, 'PcrDigestMismatch'],
    ['a malformed event log', 'attest-malformed-log', async () => onQuote((q) => void (q.eventLog = Buffer.concat([q.eventLog, Buffer.from([1, 0, 0, 0, 9, 9])]))), 'EventLogInvalid'],
    ['an event log whose counts claim more than it holds', 'attest-lying-log', async () => onQuote((q) => {
      // The digest count of the first event after the Spec ID event says 0x7fffffff.
      const specSize = q.eventLog.readUInt32LE(28);
      q.eventLog.writeUInt32LE(0x7fffffff, 32 + specSize + 8);
    }), 'EventLogInvalid'],
    ['an oversized event log (3 MiB)', 'attest-oversized-log', async () => onQuote((q) => void (q.eventLog = Buffer.concat([q.eventLog, Buffer.alloc(3 * 1024 * 1024)]))), 'EventLogInvalid'],
    ['a node that says its log is too large', 'attest-log-error', async () => onQuote((q) => void ((q.eventLog = Buffer.alloc(0)), (q.eventLogError = 'the event log exceeds 2097152 bytes'))), 'EventLogInvalid'],
    ['a TPM that refuses to quote', 'attest-tpm-refuses', async () => async (command, answer) =>
      command.body?.$case === 'quote' ? { id: command.id, error: 'tpm2_quote: ERROR: Esys_Quote(0x98E) - tpm:session(1):the authorization HMAC check failed', body: undefined } : answer(), 'TpmRefused'],
    ['a TPM that refuses credential activation', 'attest-no-activation', async () => async (command, answer) =>
      command.body?.$case === 'activateCredential' ? { id: command.id, error: 'tpm2_activatecredential: ERROR: Esys_ActivateCredential(0x922)', body: undefined } : answer(), 'CredentialActivationFailed'],
    ['an activation that returns another secret', 'attest-wrong-secret', async () => async (command, answer) =>
      command.body?.$case === 'activateCredential' ? { id: command.id, error: '', body: { $case: 'activatedCredential', value: { secret: randomBytes(32) } } } : answer(), 'CredentialActivationFailed'],
    ['an AK of the wrong type (not a restricted signing key)', 'attest-wrong-ak', async (n) => {
      const tools = { env: { ...process.env, TPM2TOOLS_TCTI: n.swtpm.tcti }, cwd: n.workDir, timeoutMs: 10_000 };
      // Planted at the AK handle before the agent starts: an unrestricted signing key.
      // swtpm holds three transient objects and nothing flushes them without a resource manager.
      const step = async (command: string, args: string[]) => {
        await runChecked(runCommand, command, args, tools);
        await runCommand('tpm2_flushcontext', ['-t'], tools);
      };
      await step('tpm2_createprimary', ['-C', 'o', '-G', 'ecc', '-c', 'primary.ctx']);
      await step('tpm2_create', ['-C', 'primary.ctx', '-G', 'rsa2048:rsassa-sha256:null', '-a', 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign', '-u', 'key.pub', '-r', 'key.priv']);
      await runChecked(runCommand, 'tpm2_load', ['-C', 'primary.ctx', '-u', 'key.pub', '-r', 'key.priv', '-c', 'key.ctx'], tools);
      await step('tpm2_evictcontrol', ['-C', 'o', '-c', 'key.ctx', '0x81010002']);
      return (_command, answer) => answer();
    }, 'AttestationKeyInvalid'],
  ];

  it.each(cases)('%s', async (_what, name, makeTamper, reason) => {
    const node = await enrol(name);
    const agent = agentFor(node, await makeTamper(node));
    const n = await attested(name, 'False', reason);
    expect(attestationOf(n)?.failure).toEqual(expect.any(String));
    expect(attestationOf(n)?.quote).toBeUndefined();
    // It stays refused: later rounds give the same verdict, never True.
    const quotesBefore = agent.commands.length;
    await eventually(() => agent.commands.length > quotesBefore, 10_000, 'another round');
    await delay(300);
    expect(condition(await env.get('secainodes', name), 'Attested')).toMatchObject({ status: 'False', reason });
    expect(operator.isLeader()).toBe(true);
  }, 60_000);

  it('an EK certificate from a CA the fleet does not trust', async () => {
    const name = 'attest-untrusted-ek';
    const node = await enrol(name);
    const foreign = await bootTpm(`${name}-foreign`, join(dir, 'other-ca'));
    agentFor({ ...node, ...foreign });
    const n = await attested(name, 'False', 'EndorsementCertificateUntrusted');
    expect(attestationOf(n)?.enrolment).toBeUndefined();
  }, 60_000);

  it('a replayed old quote', async () => {
    const node = await enrol('attest-replay');
    let first: CommandResult | undefined;
    const agent = agentFor(node, async (command, answer) => {
      if (command.body?.$case !== 'quote') return answer();
      if (!first) {
        first = await answer();
        return first;
      }
      return { ...first, id: command.id };
    });
    await attested(node.name, 'True');
    const n = await attested(node.name, 'False', 'NonceReplayed');
    expect(attestationOf(n)?.failure).toContain('replayed');
    agent.tamper = undefined;
    await attested(node.name, 'True');
  }, 60_000);
});

it('refuses and flags a node that later presents another TPM\'s keys, until an administrator re-enrols it; a restarted operator remembers', async () => {
  const node = await enrol('attest-key-change');
  const agent = agentFor(node);
  const enrolled = attestationOf(await attested(node.name, 'True'))!.enrolment!;
  agent.stop();
  const other = await bootTpm('attest-key-change-other');
  const swapped = agentFor({ ...node, eventLog: other.eventLog }, undefined, other.swtpm.tcti);
  const n = await attested(node.name, 'False', 'AttestationKeyChanged');
  expect(attestationOf(n)?.enrolment).toEqual(enrolled);
  expect(attestationOf(n)?.failure).toContain('another endorsement key');
  await eventually(async () => (await env.events(node.name)).some((e) => e.reason === 'AttestationKeyChanged' && e.type === 'Warning'), 10_000, 'the AttestationKeyChanged Event');
  const text = await metrics();
  expect(metric(text, 'secai_attestation_failures_total', 'reason="AttestationKeyChanged"')).toBeGreaterThanOrEqual(1);
  // "Whose attestation failed" for the alerts: one series per refused node, with the reason.
  expect(text).toContain(`secai_node_attestation_failed{node="${node.name}",reason="AttestationKeyChanged"} 1`);
  for (const o of await env.list('secainodes')) {
    if (condition(o, 'Attested')?.status === 'True') expect(text).not.toContain(`secai_node_attestation_failed{node="${o.metadata.name}"`);
  }

  // Refused, not quoted: back on its own TPM it stays flagged, also for a restarted operator.
  swapped.stop();
  const back = agentFor(node);
  await delay(2 * INTERVAL_MS);
  expect(back.commands).not.toContain('quote');
  const attestedBefore = (await env.list('secainodes')).filter((o) => condition(o, 'Attested')?.status === 'True').map((o) => o.metadata.name ?? '');
  await operator.stop();
  operator = await start();
  await operator.leading;
  endpoint.address = operator.channelAddresses()[0]!;
  await delay(3 * INTERVAL_MS);
  expect(condition(await env.get('secainodes', node.name), 'Attested')).toMatchObject({ status: 'False', reason: 'AttestationKeyChanged' });
  expect(back.commands).not.toContain('quote');

  await env.admin.request({
    method: 'PATCH',
    path: `/apis/secai.io/v1alpha1/secainodes/${node.name}`,
    body: { metadata: { annotations: { [ATTESTATION_REENROL_ANNOTATION]: 'checked the node, 2026-12-07' } } },
    contentType: 'application/merge-patch+json',
  });
  const again = await attested(node.name, 'True');
  expect(attestationOf(again)?.enrolment?.ekFingerprint).toBe(enrolled.ekFingerprint);
  await eventually(async () => {
    const metadata = (await env.get('secainodes', node.name))?.metadata as { annotations?: Record<string, string> } | undefined;
    return metadata !== undefined && metadata.annotations?.[ATTESTATION_REENROL_ANNOTATION] === undefined;
  }, 10_000, 'the annotation to go');
  expect(await env.eventReasons(node.name, ['AttestationReenrolled'])).toContain('AttestationReenrolled');
  // The nodes attested before the restart still are (their enrolment came back from status; quotes go on).
  for (const name of attestedBefore) expect(condition(await env.get('secainodes', name), 'Attested')?.status).toBe('True');
}, 90_000);
