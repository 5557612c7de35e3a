// Reports from agents are untrusted: every list is capped, names deduplicated, strings cut and
// digests checked before anything reaches a status write.
import { DutyStatus, EgressMode, ModelState, SecureBootState, ServiceState, TorState, type DutyResult, type Report } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { sanitizeHello, sanitizeReport } from './report-status.js';

const D = (c: string) => c.repeat(64);

function report(over: Partial<Report> = {}): Report {
  return {
    planGeneration: 3,
    planDigest: D('a'),
    planError: '',
    egress: { mode: EgressMode.EGRESS_MODE_AUDIT, rulesetDigest: D('b'), droppedPackets: 5, auditedPackets: 7, allowEntries: 2 },
    vault: undefined,
    attestation: { secureBoot: SecureBootState.SECURE_BOOT_STATE_DISABLED, tpmPresent: false, pcrBank: 'sha256', pcrDigest: 'not-hex', mismatchedPcrs: [7, 7, 99, 0], checkedUnixMillis: 0 },
    models: [],
    services: [],
    auditHead: { treeSize: 12, rootHash: Buffer.alloc(32, 1), timestampUnixMillis: 0, signature: Buffer.alloc(64) },
    observedUnixMillis: 0,
    duties: [],
    ...over,
  };
}

it('maps a well-formed report', () => {
  const s = sanitizeReport(report(), 1_000);
  expect(s).toMatchObject({
    appliedGeneration: 3,
    appliedDigest: D('a'),
    egress: { mode: 'Audit', rulesetDigest: D('b'), droppedPackets: 5, auditedPackets: 7, allowEntries: 2 },
    attestation: { secureBoot: 'Disabled', tpmPresent: false, pcrBank: 'sha256', mismatchedPcrs: [0, 7] },
    auditHead: { treeSize: 12, rootHash: Buffer.alloc(32, 1), timestampUnixMillis: 0, signature: Buffer.alloc(64) },
    receivedAt: 1_000,
  });
  expect(s.attestation?.pcrDigest).toBeUndefined();
  expect(s.planError).toBeUndefined();
});

it('caps, deduplicates and validates models and services', () => {
  const models = Array.from({ length: 300 }, (_, i) => ({ name: `m${String(i).padStart(3, '0')}`, sha256: D('c'), state: ModelState.MODEL_STATE_TRUSTED, stage: '', reason: '', message: '' }));
  models.unshift({ name: 'm000', sha256: D('d'), state: ModelState.MODEL_STATE_REJECTED, stage: 's'.repeat(100), reason: 'r'.repeat(200), message: 'x'.repeat(5000) });
  models.push({ name: 'bad-digest', sha256: 'ABC', state: ModelState.MODEL_STATE_TRUSTED, stage: '', reason: '', message: '' });
  const services = [
    { name: 'a', model: 'm', state: ServiceState.SERVICE_STATE_SERVING, reason: '', message: '', gpuLayers: 5000 },
    { name: 'a', model: 'm', state: ServiceState.SERVICE_STATE_FAILED, reason: '', message: '', gpuLayers: 0 },
    { name: 'b', model: 'm', state: ServiceState.SERVICE_STATE_UNSPECIFIED, reason: '', message: '', gpuLayers: 0 },
  ];
  const s = sanitizeReport(report({ models, services }), 0);
  expect(s.models).toHaveLength(256);
  expect(s.models[0]).toMatchObject({ name: 'm000', sha256: D('d'), state: 'Rejected' });
  expect(s.models[0]?.stage).toHaveLength(64);
  expect(s.models[0]?.reason).toHaveLength(128);
  expect(s.models[0]?.message).toHaveLength(1024);
  expect(s.models.some((m) => m.name === 'bad-digest')).toBe(false);
  expect(s.inference).toEqual([{ service: 'a', model: 'm', state: 'Serving' }]);
});

it('bounds a plan refusal', () => {
  expect(sanitizeReport(report({ planError: 'p'.repeat(2000) }), 0).planError).toHaveLength(1024);
});

const AT = 1_780_000_000_000;
function duty(over: Partial<DutyResult> = {}): DutyResult {
  return { duty: 'egress', status: DutyStatus.DUTY_STATUS_OK, reason: 'Converged', message: 'fine', planGeneration: 3, readBackDigest: D('e'), checkedUnixMillis: AT, consecutiveFailures: 0, drifts: 0, lastDrift: undefined, ...over };
}

it('maps duty results with their codes, in duty order, and their last drift', () => {
  const s = sanitizeReport(
    report({
      duties: [
        duty({ duty: 'models', status: DutyStatus.DUTY_STATUS_DRIFTED, reason: 'Drift', readBackDigest: '', drifts: 2, lastDrift: { kind: 'store-file-changed', detail: 'd', detectedUnixMillis: AT, repairedUnixMillis: 0 } }),
        duty({ drifts: 1, lastDrift: { kind: 'table-missing', detail: 'gone', detectedUnixMillis: AT - 1000, repairedUnixMillis: AT } }),
      ],
    }),
    0,
  );
  expect(s.duties).toEqual([
    { duty: 'egress', state: 'OK', reason: 'Converged', message: 'fine', planGeneration: 3, readBackDigest: D('e'), checkedAt: '2026-05-28T20:26:40Z', drifts: 1, lastDrift: { kind: 'table-missing', detail: 'gone', detectedAt: '2026-05-28T20:26:39Z', repairedAt: '2026-05-28T20:26:40Z' } },
    { duty: 'models', state: 'Drifted', reason: 'Drift', message: 'fine', planGeneration: 3, checkedAt: '2026-05-28T20:26:40Z', drifts: 2, lastDrift: { kind: 'store-file-changed', detail: 'd', detectedAt: '2026-05-28T20:26:40Z' } },
  ]);
});

it.each<[string, Partial<DutyResult> | undefined, unknown]>([
  ['an unknown duty', { duty: 'firewall' }, []],
  ['an unknown status', { status: 99 as DutyStatus }, []],
  ['an unknown reason, read as Failed rather than trusted', { reason: 'AllGood' }, [expect.objectContaining({ reason: 'Failed' })]],
  ['an unknown drift kind, dropped', { drifts: 0, lastDrift: { kind: 'sneaky', detail: '', detectedUnixMillis: AT, repairedUnixMillis: 0 } }, [expect.not.objectContaining({ lastDrift: expect.anything() })]],
  ['an implausible time, dropped', { checkedUnixMillis: -5 }, [expect.not.objectContaining({ checkedAt: expect.anything() })]],
  ['a duplicate duty, the first kept', undefined, [expect.objectContaining({ message: 'first' })]],
])('refuses or bounds %s', (_what, over, expected) => {
  const duties = over ? [duty(over)] : [duty({ message: 'first' }), duty({ message: 'second' })];
  expect(sanitizeReport(report({ duties }), 0).duties).toEqual(expected);
});

it('bounds what a hello claims', () => {
  const id = sanitizeHello({
    nodeName: 'n',
    agentVersion: 'v'.repeat(100),
    protocolVersion: 5000,
    capabilities: [...Array.from({ length: 50 }, (_, i) => `cap-${i}`), 'cap-1', ''],
    auditPublicKey: Buffer.alloc(32),
    appliedPlanGeneration: 0,
    appliedPlanDigest: '',
  });
  expect(id.version).toHaveLength(64);
  expect(id.protocolVersion).toBeUndefined();
  expect(id.capabilities).toHaveLength(32);
  expect(new Set(id.capabilities).size).toBe(32);
});

it('reads fields of the wrong type as empty, so that the status stays valid', () => {
  const hostile = {
    ...report(),
    planError: 42,
    vault: { compliant: 'yes', reasons: 'x' },
    attestation: { secureBoot: 9, tpmPresent: 1, pcrBank: {}, pcrDigest: null, mismatchedPcrs: null, checkedUnixMillis: Infinity },
    models: null,
    services: undefined,
    auditHead: { treeSize: -1, rootHash: 'short' },
  } as unknown as Report;
  const s = sanitizeReport(hostile, 0);
  expect(s.vault).toEqual({ encrypted: false, sealed: false, locked: false, compliant: false, lockEpoch: 0 });
  expect(s.attestation).toEqual({ secureBoot: 'Unknown', tpmPresent: false });
  expect(s.models).toEqual([]);
  expect(s.inference).toEqual([]);
  // A head is kept for the verifier, its byte fields bounded; a malformed one fails verification there.
  expect(s.auditHead).toEqual({ treeSize: -1, rootHash: Buffer.alloc(0), timestampUnixMillis: -1, signature: Buffer.alloc(0) });
  expect(s.planError).toBeUndefined();
});

it('maps the Tor client report, bounded, and leaves it out when the state is unknown', () => {
  const s = sanitizeReport(report({ tor: { state: TorState.TOR_STATE_UNAVAILABLE, bootstrapPercent: 250, reason: 'r'.repeat(100), message: 'no consensus', restarts: 3 } }), 0);
  expect(s.tor).toEqual({ state: 'Unavailable', bootstrapPercent: 0, reason: 'r'.repeat(63) + '…', message: 'no consensus', restarts: 3 });
  expect(sanitizeReport(report({ tor: { state: TorState.TOR_STATE_AVAILABLE, bootstrapPercent: 100, reason: 'Bootstrapped', message: '', restarts: 0 } }), 0).tor).toEqual({ state: 'Available', bootstrapPercent: 100, reason: 'Bootstrapped' });
  expect(sanitizeReport(report({ tor: { state: 77 as TorState, bootstrapPercent: 0, reason: '', message: '', restarts: 0 } }), 0).tor).toBeUndefined();
});
