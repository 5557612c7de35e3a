// Remote attestation of every node that offers a TPM (capability tpm2), driven by the operator over
// the agent channel, in the manner of Keylime's registrar and verifier:
//
// - Enrolment, when an agent first connects: it presents its EK (and EK certificate) and an AK; the
//   operator checks both (enrolment.ts), wraps a random secret to the EK for the AK's Name
//   (make-credential.ts) and accepts the AK only if the agent's TPM gives the secret back
//   (ActivateCredential). The EK fingerprint and AK public area go into SecAINode status, so that a
//   restarted or newly elected operator holds the node to them. A node that later presents another
//   EK or AK is refused and flagged (AttestationKeyChanged, sticky until an administrator
//   re-enrols it with the secai.io/attestation-reenrol annotation or deletes its SecAINode).
// - Quotes, on every connection, on an interval, when the plan's PCR selection changes, and on
//   demand (a new value of the secai.io/attestation-request annotation): a fresh 32-byte nonce, kept
//   until its answer (single use, bounded age); the answer is verified by quote-verification.ts.
//
// Attested=True is only ever the result of a quote verified here; what agents say about themselves
// never makes a node attested.
import { randomBytes, type X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { NodeAttestationEnrolment, NodeAttestationQuote, SecAINode, SecAINodeStatus } from '../../../api/gen/crd-types.js';
import type { Command, CommandResult, VaultPlan } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import type { AgentCommander } from '../fleet/audit-verdicts.js';
import type { NodeObservations } from '../fleet/intake.js';
import type { Clock } from '../runtime/clock.js';
import { findCondition, rfc3339Seconds } from '../runtime/conditions.js';
import type { EventRecorder } from '../runtime/events.js';
import type { LoggedSecureBoot } from './event-log.js';
import { checkAttestationKey, checkEndorsementKey, credentialActivated, EnrolmentFailure } from './enrolment.js';
import { makeCredential } from './make-credential.js';
import { QuoteFailure, verifyQuote, type QuoteRequestRecord, type VerifiedQuote } from './quote-verification.js';
import type { TpmPublic } from './tpm-structures.js';

/** Reasons of the Attested condition besides the enrolment and quote failures. */
export const AttestationReason = {
  ...EnrolmentFailure,
  ...QuoteFailure,
  AttestationKeyChanged: 'AttestationKeyChanged',
  TpmAbsent: 'TpmAbsent',
  TpmRefused: 'TpmRefused',
  QuoteTimeout: 'QuoteTimeout',
  QuoteStale: 'QuoteStale',
} as const;
export type AttestationReason = (typeof AttestationReason)[keyof typeof AttestationReason];

export const ATTESTATION_REENROL_ANNOTATION = 'secai.io/attestation-reenrol';
export const ATTESTATION_REQUEST_ANNOTATION = 'secai.io/attestation-request';
/** The VaultPolicy default selection (DESIGN: sha256:0,2,4,7) when no policy names PCRs. */
export const DEFAULT_SELECTION = { bank: 'sha256', pcrs: [0, 2, 4, 7] } as const;

export interface AttestationEnrolment {
  ekFingerprint: string;
  ekCertificate?: NodeAttestationEnrolment['ekCertificate'];
  akPublic: Buffer;
  akName: Buffer;
  ak: TpmPublic;
  enrolledAt: number;
}

/** The last verified quote in the shape SecAINode status keeps it, with what Attested needs. */
export interface AttestedQuote {
  status: NodeAttestationQuote;
  /** SHA-256 (hex) over the quoted values, ascending. */
  pcrDigest: string;
  mismatchedPcrs: number[];
  secureBoot?: LoggedSecureBoot;
  at: number;
}

export interface AttestationVerdict {
  enrolment?: AttestationEnrolment;
  quote?: AttestedQuote;
  failure?: { reason: AttestationReason; message: string; at: number };
}

/** What the node controller reads of remote attestation: the verdicts, and when they change. */
export interface AttestationVerdicts {
  verdict(node: string, uid: string): AttestationVerdict | undefined;
  onVerdict(listener: (node: string) => void): void;
  forget(node: string): void;
}

export interface AttestationVerifierOptions {
  observations(node: string): NodeObservations | undefined;
  /** The node's SecAINode as this process last saw or wrote it. */
  secaiNode(node: string): { object: SecAINode; status?: SecAINodeStatus } | undefined;
  /** The vault part of the node's current plan: the PCR selection and the expected values. */
  vaultPlan(node: string): VaultPlan | undefined;
  /** Removes the re-enrol annotation once honoured (guarded by its value). */
  clearReenrol(node: string, value: string): Promise<void>;
  events: EventRecorder;
  clock: Clock;
  logger: Logger;
  registry: Registry;
  /** The fleet's EK CAs: when given, every EK must carry a certificate that chains to one. */
  ekCas?: readonly X509Certificate[];
  intervalMs?: number;
  nonceMaxAgeMs?: number;
  commandTimeoutMs?: number;
  maxConcurrent?: number;
}

interface NodeState extends AttestationVerdict {
  uid: string;
  /** The connection whose keys were checked. */
  checkedSession?: number;
  lastRoundAt?: number;
  /** The PCR selection of the last round, to quote again when the plan changes it. */
  selection?: string;
  request?: string;
  reenrolled?: string;
  /** Nonces answered (single use): an old quote carries one of them. */
  used: Buffer[];
  running: boolean;
  again: boolean;
}

const USED_NONCES_KEPT = 64;
const NONCE_BYTES = 32;
const STICKY: ReadonlySet<string> = new Set([AttestationReason.AttestationKeyChanged]);


/** The PCR selection a node is quoted over: the policy's PCRs and those with expected values. */
export function quoteSelection(plan: VaultPlan | undefined): { bank: string; pcrs: number[] } {
  const pcrs = [...new Set([...(plan?.pcrs ?? []), ...(plan?.expectedPcrs ?? []).map((e) => e.index)])].filter((p) => p >= 0 && p <= 23).sort((a, b) => a - b);
  if (pcrs.length === 0) return { bank: DEFAULT_SELECTION.bank, pcrs: [...DEFAULT_SELECTION.pcrs] };
  return { bank: plan?.pcrBank || DEFAULT_SELECTION.bank, pcrs };
}

/** The enrolment and the last quote as SecAINode status records them (a restarted operator reads them back). */
export function verdictFromStatus(status: SecAINodeStatus | undefined): AttestationVerdict {
  const a = status?.attestation;
  const verdict: AttestationVerdict = {};
  const e = a?.enrolment;
  if (e) {
    const akPublic = Buffer.from(e.akPublic, 'base64');
    const checked = checkAttestationKey(akPublic);
    const at = Date.parse(e.enrolledAt);
    if (checked.ok && checked.value.name.toString('hex') === e.akName) {
      verdict.enrolment = {
        ekFingerprint: e.ekFingerprint,
        ...(e.ekCertificate ? { ekCertificate: e.ekCertificate } : {}),
        akPublic,
        akName: checked.value.name,
        ak: checked.value.ak,
        enrolledAt: Number.isFinite(at) ? at : 0,
      };
    }
  }
  if (a?.quote && verdict.enrolment) {
    const at = Date.parse(a.quote.verifiedAt);
    verdict.quote = {
      status: a.quote,
      pcrDigest: a.pcrDigest ?? '',
      mismatchedPcrs: a.mismatchedPcrs ?? [],
      ...(a.secureBootVerified && a.secureBoot !== 'Unknown' ? { secureBoot: a.secureBoot } : {}),
      at: Number.isFinite(at) ? at : 0,
    };
  }
  const condition = findCondition(status?.conditions, 'Attested');
  if (condition?.status === 'False' && STICKY.has(condition.reason)) {
    const at = Date.parse(condition.lastTransitionTime);
    verdict.failure = { reason: condition.reason as AttestationReason, message: a?.failure ?? condition.message, at: Number.isFinite(at) ? at : 0 };
  }
  return verdict;
}

function quoteStatus(quote: VerifiedQuote, at: number): AttestedQuote {
  return {
    status: {
      verifiedAt: rfc3339Seconds(at),
      pcrBank: quote.bank,
      pcrs: [...quote.pcrs].sort(([a], [b]) => a - b).map(([index, value]) => ({ index, value: value.toString('hex') })),
      resetCount: quote.attest.resetCount,
      ...(quote.eventLog ? { eventLogEvents: quote.eventLog.events, replayedPcrs: quote.eventLog.replayedPcrs } : {}),
    },
    pcrDigest: quote.pcrDigest,
    mismatchedPcrs: quote.mismatchedPcrs,
    ...(quote.eventLog?.secureBoot ? { secureBoot: quote.eventLog.secureBoot } : {}),
    at,
  };
}

class RoundError extends Error {
  constructor(
    readonly reason: AttestationReason,
    message: string,
  ) {
    super(message);
  }
}

export class AttestationVerifier implements AttestationVerdicts {
  private readonly states = new Map<string, NodeState>();
  private readonly listeners = new Set<(node: string) => void>();
  private commander: AgentCommander | undefined;
  private ticker: ReturnType<typeof setInterval> | undefined;
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly intervalMs: number;
  private readonly rounds: Counter<'result'>;
  private readonly failures: Counter<'reason'>;
  private readonly enrolments: Counter<'result'>;
  private readonly roundSeconds: Histogram<'kind'>;

  constructor(private readonly opts: AttestationVerifierOptions) {
    this.intervalMs = opts.intervalMs ?? 60_000;
    const registers = [opts.registry];
    this.rounds = new Counter({ name: 'secai_attestation_quotes_total', help: 'Quotes requested from nodes, by result (verified, failed, error when the node gave none).', labelNames: ['result'] as const, registers });
    this.failures = new Counter({ name: 'secai_attestation_failures_total', help: 'Enrolments and quotes refused, by reason.', labelNames: ['reason'] as const, registers });
    this.enrolments = new Counter({ name: 'secai_attestation_enrolments_total', help: 'TPM enrolments (credential activations), by result.', labelNames: ['result'] as const, registers });
    this.roundSeconds = new Histogram({
      name: 'secai_attestation_round_seconds',
      help: 'Time from sending a challenge to a verified answer: enrolment (identity and credential activation) or quote (with the event log replay).',
      labelNames: ['kind'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    for (const reason of Object.values(AttestationReason)) this.failures.inc({ reason }, 0);
    // "Whose attestation failed" as one query: a series for each failing node, for no other, and
    // none for a node without a TPM (a configuration, not an incident; Attested=False says so).
    const states = this.states;
    new Gauge({
      name: 'secai_node_attestation_failed',
      help: 'Set to 1 for each node this leader refused to attest (Attested=False), with the reason; absent for every other node and for nodes without a TPM.',
      labelNames: ['node', 'reason'] as const,
      registers,
      collect() {
        this.reset();
        for (const [node, state] of states) if (state.failure && state.failure.reason !== AttestationReason.TpmAbsent) this.set({ node, reason: state.failure.reason }, 1);
      },
    });
  }

  /** Starts challenging agents (the channel is up: this replica leads). */
  attach(commander: AgentCommander): void {
    this.commander = commander;
    this.ticker ??= setInterval(() => this.tick(), Math.max(250, Math.min(5_000, this.intervalMs / 4)));
    this.ticker.unref?.();
  }

  stop(): void {
    clearInterval(this.ticker);
    this.ticker = undefined;
  }

  onVerdict(listener: (node: string) => void): void {
    this.listeners.add(listener);
  }

  /** The verdict for the SecAINode `uid`, once this process has looked at the node; undefined before. */
  verdict(node: string, uid: string): AttestationVerdict | undefined {
    const s = this.states.get(node);
    if (!s || s.uid !== uid) return undefined;
    return { ...(s.enrolment ? { enrolment: s.enrolment } : {}), ...(s.quote ? { quote: s.quote } : {}), ...(s.failure ? { failure: s.failure } : {}) };
  }

  forget(node: string): void {
    this.states.delete(node);
  }

  private changed(node: string): void {
    for (const listener of this.listeners) listener(node);
  }

  private stateOf(node: string): NodeState | undefined {
    const secaiNode = this.opts.secaiNode(node);
    const uid = secaiNode?.object.metadata.uid;
    if (!secaiNode || !uid) return undefined;
    const known = this.states.get(node);
    if (known?.uid === uid) return known;
    const state: NodeState = { uid, used: [], running: false, again: false, ...verdictFromStatus(secaiNode.status) };
    this.states.set(node, state);
    return state;
  }

  private tick(): void {
    const now = this.opts.clock.now();
    for (const [node, state] of this.states) {
      // A quote older than three intervals no longer vouches for the node (disconnected or silent).
      if (state.quote && !state.failure && now - state.quote.at > 3 * this.intervalMs) {
        state.failure = { reason: AttestationReason.QuoteStale, message: `no quote verified since ${rfc3339Seconds(state.quote.at)}`, at: now };
        this.changed(node);
      }
      this.kick(node);
    }
  }

  /** Looks at whether the node is due for enrolment or a quote, and runs the round. Cheap and idempotent. */
  kick(node: string): void {
    const state = this.stateOf(node);
    if (!state || !this.commander) return;
    const annotations = this.opts.secaiNode(node)?.object.metadata.annotations ?? {};
    const reenrol = annotations[ATTESTATION_REENROL_ANNOTATION];
    if (reenrol !== undefined && reenrol !== state.reenrolled) {
      this.reenrol(node, state, reenrol);
      return;
    }
    if (state.running) {
      state.again = true;
      return;
    }
    if (!this.due(node, state)) return;
    state.running = true;
    void this.run(node, state);
  }

  private reenrol(node: string, state: NodeState, value: string): void {
    const fresh: NodeState = { uid: state.uid, used: state.used, running: false, again: false, reenrolled: value };
    this.states.set(node, fresh);
    this.opts.logger.info({ node, audit: 'attestation.reenrol' }, 'attestation enrolment forgotten at an administrator\'s request');
    const obj = this.opts.secaiNode(node)?.object;
    if (obj) void this.opts.events.record(obj, 'Normal', 'AttestationReenrolled', 'Reenrol', 'enrolled TPM keys forgotten at an administrator\'s request; the node is enrolled again on its next connection');
    void this.opts.clearReenrol(node, value).catch((err: Error) => this.opts.logger.warn({ node, err: err.message }, 'could not remove the re-enrol annotation'));
    this.changed(node);
    this.kick(node);
  }

  private due(node: string, state: NodeState): boolean {
    if (state.failure && STICKY.has(state.failure.reason)) return false;
    const session = this.opts.observations(node)?.session;
    if (!session) return false;
    if (state.checkedSession !== session.connectedAt) return true;
    const request = this.opts.secaiNode(node)?.object.metadata.annotations?.[ATTESTATION_REQUEST_ANNOTATION];
    if (request !== undefined && request !== state.request) return true;
    if (JSON.stringify(quoteSelection(this.opts.vaultPlan(node))) !== state.selection) return true;
    return state.lastRoundAt === undefined || this.opts.clock.now() - state.lastRoundAt >= this.intervalMs;
  }

  private async slot(): Promise<() => void> {
    const max = this.opts.maxConcurrent ?? 16;
    if (this.running >= max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.running++;
    return () => {
      this.running--;
      this.waiting.shift()?.();
    };
  }

  private async run(node: string, state: NodeState): Promise<void> {
    const release = await this.slot();
    try {
      do {
        state.again = false;
        await this.round(node, state);
      } while (state.again && this.states.get(node) === state && this.due(node, state));
    } finally {
      state.running = false;
      release();
    }
  }

  private fail(node: string, state: NodeState, reason: AttestationReason, message: string): void {
    const log = this.opts.logger.child({ node, component: 'attestation' });
    const previous = state.failure;
    state.failure = { reason, message: message.slice(0, 1024), at: this.opts.clock.now() };
    this.failures.inc({ reason });
    if (reason === AttestationReason.TpmAbsent) log.info({ reason }, 'the node offers no TPM: not attested');
    else log.warn({ audit: 'attestation.failed', reason, message }, 'attestation failed');
    if (previous?.reason !== reason || previous.message !== state.failure.message) this.changed(node);
  }

  private async round(node: string, state: NodeState): Promise<void> {
    const session = this.opts.observations(node)?.session;
    if (!session || !this.commander) return;
    const request = this.opts.secaiNode(node)?.object.metadata.annotations?.[ATTESTATION_REQUEST_ANNOTATION];
    const selection = quoteSelection(this.opts.vaultPlan(node));
    state.lastRoundAt = this.opts.clock.now();
    state.selection = JSON.stringify(selection);
    if (request !== undefined) state.request = request;
    if (!session.identity.capabilities.includes('tpm2')) {
      state.checkedSession = session.connectedAt;
      if (state.failure?.reason !== AttestationReason.TpmAbsent) this.fail(node, state, AttestationReason.TpmAbsent, 'the agent offers no TPM (no tpm2 capability): nothing can vouch for its boot state');
      return;
    }
    try {
      if (state.checkedSession !== session.connectedAt) {
        // A failure of the identity check throws; one left from before (QuoteStale after the
        // agent was away) must not stop the quote that would clear it.
        await this.checkIdentity(node, state);
        if (this.states.get(node) !== state) return;
        state.checkedSession = session.connectedAt;
      }
      await this.quote(node, state, selection);
    } catch (err) {
      if (this.states.get(node) !== state) return;
      if (err instanceof RoundError) {
        if (err.reason === AttestationReason.AttestationKeyChanged) this.keyChanged(node, state, err.message);
        else this.fail(node, state, err.reason, err.message);
        return;
      }
      // The channel closed or the command timed out: a node still connected but silent is flagged.
      if (this.opts.observations(node)?.session?.connectedAt === session.connectedAt) {
        this.rounds.inc({ result: 'error' });
        this.fail(node, state, AttestationReason.QuoteTimeout, `the agent did not answer the attestation challenge: ${(err as Error).message}`);
      }
    }
  }

  private keyChanged(node: string, state: NodeState, message: string): void {
    this.fail(node, state, AttestationReason.AttestationKeyChanged, message);
    const obj = this.opts.secaiNode(node)?.object;
    if (obj) void this.opts.events.record(obj, 'Warning', 'AttestationKeyChanged', 'Enrol', `${message}; the node is refused until an administrator re-enrols it (annotation ${ATTESTATION_REENROL_ANNOTATION})`.slice(0, 1024));
  }

  private async send(node: string, body: NonNullable<Command['body']>): Promise<CommandResult['body']> {
    const answer = await this.commander!.sendCommand(node, body, this.opts.commandTimeoutMs ?? 15_000);
    if (answer.error) throw new RoundError(AttestationReason.TpmRefused, `the node's TPM refused ${body.$case}: ${answer.error.slice(0, 500)}`);
    return answer.body;
  }

  /** The node's EK and AK: the enrolled ones again, or a first enrolment proven by credential activation. */
  private async checkIdentity(node: string, state: NodeState): Promise<void> {
    const started = this.opts.clock.now();
    const body = await this.send(node, { $case: 'readAttestationIdentity', value: {} });
    if (body?.$case !== 'attestationIdentity') throw new RoundError(AttestationReason.TpmRefused, `the node answered ${body?.$case ?? 'nothing'} instead of its TPM identity`);
    const identity = body.value;
    const ek = checkEndorsementKey(Buffer.from(identity.ekPublic), identity.ekCertificate.length ? Buffer.from(identity.ekCertificate) : undefined, { ekCas: this.opts.ekCas ?? [] });
    if (!ek.ok) throw new RoundError(ek.reason, ek.message);
    const ak = checkAttestationKey(Buffer.from(identity.akPublic));
    if (!ak.ok) throw new RoundError(ak.reason, ak.message);
    const enrolled = state.enrolment;
    if (enrolled) {
      if (enrolled.ekFingerprint !== ek.value.fingerprint) throw new RoundError(AttestationReason.AttestationKeyChanged, `the node presents another endorsement key (${ek.value.fingerprint.slice(0, 16)}…) than the one enrolled (${enrolled.ekFingerprint.slice(0, 16)}…)`);
      if (!enrolled.akName.equals(ak.value.name)) throw new RoundError(AttestationReason.AttestationKeyChanged, `the node presents another attestation key (Name ${ak.value.name.toString('hex').slice(0, 20)}…) than the one enrolled (${enrolled.akName.toString('hex').slice(0, 20)}…)`);
      return;
    }
    const secret = randomBytes(32);
    const credential = makeCredential(ek.value.ek, ak.value.name, secret);
    let activated;
    try {
      activated = await this.send(node, { $case: 'activateCredential', value: credential });
    } catch (err) {
      if (err instanceof RoundError) throw new RoundError(AttestationReason.CredentialActivationFailed, `the AK is not proven to live in the EK's TPM: ${err.message}`);
      throw err;
    }
    if (activated?.$case !== 'activatedCredential' || !credentialActivated(secret, Buffer.from(activated.value.secret))) {
      this.enrolments.inc({ result: 'failed' });
      throw new RoundError(AttestationReason.CredentialActivationFailed, 'the node did not return the secret wrapped to its EK for its AK: the AK is not proven to live in that TPM');
    }
    const now = this.opts.clock.now();
    state.enrolment = {
      ekFingerprint: ek.value.fingerprint,
      ...(ek.value.certificate ? { ekCertificate: ek.value.certificate } : {}),
      akPublic: Buffer.from(identity.akPublic),
      akName: ak.value.name,
      ak: ak.value.ak,
      enrolledAt: now,
    };
    this.enrolments.inc({ result: 'enrolled' });
    this.roundSeconds.observe({ kind: 'enrolment' }, (now - started) / 1000);
    this.opts.logger.info({ node, audit: 'attestation.enrolled', ekFingerprint: ek.value.fingerprint, ekCertificate: ek.value.certificate?.issuer }, 'TPM enrolled');
    this.changed(node);
  }

  private async quote(node: string, state: NodeState, selection: { bank: string; pcrs: number[] }): Promise<void> {
    const enrolment = state.enrolment;
    if (!enrolment) return;
    const started = this.opts.clock.now();
    const request: QuoteRequestRecord = { nonce: randomBytes(NONCE_BYTES), issuedAt: started, bank: selection.bank, pcrs: selection.pcrs };
    const body = await this.send(node, { $case: 'quote', value: { nonce: request.nonce, pcrBank: request.bank, pcrs: request.pcrs } });
    if (this.states.get(node) !== state) return;
    const now = this.opts.clock.now();
    if (body?.$case !== 'quote') throw new RoundError(AttestationReason.TpmRefused, `the node answered ${body?.$case ?? 'nothing'} instead of a quote`);
    const q = body.value;
    const plan = this.opts.vaultPlan(node);
    const verdict = verifyQuote({
      ak: enrolment.ak,
      request,
      usedNonces: state.used,
      evidence: {
        attest: Buffer.from(q.attest),
        signature: Buffer.from(q.signature),
        pcrValues: q.pcrValues.map((p) => ({ index: p.index, value: Buffer.from(p.value) })),
        eventLog: Buffer.from(q.eventLog),
        ...(q.eventLogError ? { eventLogError: q.eventLogError } : {}),
      },
      expected: { expectedPcrs: plan?.expectedPcrs ?? [] },
      now,
      nonceMaxAgeMs: this.opts.nonceMaxAgeMs ?? 30_000,
    });
    // Single use: whatever the answer, this nonce is spent.
    state.used.push(request.nonce);
    if (state.used.length > USED_NONCES_KEPT) state.used.shift();
    if (!verdict.ok) {
      this.rounds.inc({ result: 'failed' });
      throw new RoundError(verdict.reason, verdict.message);
    }
    this.rounds.inc({ result: 'verified' });
    this.roundSeconds.observe({ kind: 'quote' }, (this.opts.clock.now() - started) / 1000);
    const before = JSON.stringify(state.quote && { ...state.quote, at: 0, status: { ...state.quote.status, verifiedAt: '' } });
    state.quote = quoteStatus(verdict.quote, now);
    const after = JSON.stringify({ ...state.quote, at: 0, status: { ...state.quote.status, verifiedAt: '' } });
    const recovered = state.failure !== undefined;
    delete state.failure;
    if (before !== after || recovered) this.changed(node);
  }
}

