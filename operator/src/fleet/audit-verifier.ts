// Verifies every node's audit log as it grows: each new signed tree head a node reports, and every
// time its agent (re)connects, the operator asks the agent for a consistency proof from the last
// head it verified and checks the transition with api/audit (signature, key, size, fork, proof).
//
// The last verified head lives in SecAINode status (treeSize, rootHash, keyFingerprint), read back
// from there by a restarted or newly elected operator, so an agent that comes back with an emptied,
// truncated, rewritten or forked log, or with another key, is caught whichever replica sees it.
// A failure is sticky: it stays (AuditVerified=False) until an administrator re-baselines the node
// with the secai.io/audit-rebaseline annotation (or deletes its SecAINode). Only a verdict the agent
// signed or refused counts; a command that timed out or a channel that closed just waits for the
// next head or connection.
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import {
  HeadTransitionFailure,
  verifyHeadTransition,
  type HeadTransitionResult,
  type VerifiedHead,
} from '../../../api/audit/tree-head.js';
import type { NodeAuditStatus, SecAINodeStatus } from '../../../api/gen/crd-types.js';
import type { Command, CommandResult, ConsistencyProof, SignedTreeHead } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import type { Clock } from '../runtime/clock.js';
import { findCondition } from '../runtime/conditions.js';
import type { NodeObservations } from './intake.js';
import { ownedCopy } from './report-status.js';

/** What sends commands to agents: the channel server, once this replica leads. */
export interface AgentCommander {
  sendCommand(node: string, body: Command['body'], timeoutMs?: number): Promise<CommandResult>;
}

/** What the operator concluded about one node's log, ahead of (and then recorded in) its status. */
export interface AuditVerdict {
  /** The head accepted last (trusted on first use, or proven consistent with the one before). */
  verified?: { head: VerifiedHead; at: number };
  /** Sticky: set at the first failed transition, cleared only by a re-baseline. */
  failure?: { reason: HeadTransitionFailure; message: string; at: number; head?: { treeSize: number; rootHash: string } };
}

export interface AuditVerifierOptions {
  observations(node: string): NodeObservations | undefined;
  /** The node's SecAINode as this process last saw or wrote it (uid and status). */
  secaiNode(node: string): { uid: string; status?: SecAINodeStatus } | undefined;
  clock: Clock;
  logger: Logger;
  registry: Registry;
  /** Called when the node's log failed; the node controller decides whether to lock its vault. */
  onFailure?: (node: string, verdict: AuditVerdict) => void;
  commandTimeoutMs?: number;
  /** Verifications running at once across the fleet (each is one command round trip). */
  maxConcurrent?: number;
}

interface NodeAuditState extends AuditVerdict {
  uid: string;
  /** The session whose connection has been checked with a proof. */
  checkedSession?: number;
  /** The last reported head a verification started from. */
  examined?: { treeSize: number; rootHash: Uint8Array };
  running: boolean;
  again: boolean;
}

/** How AuditVerified's message starts when the log failed; the rest is the failure (status.audit.failure). */
export const AUDIT_FAILURE_PREFIX = 'the audit log failed verification: ';

const FAILURE_REASONS: ReadonlySet<string> = new Set(Object.values(HeadTransitionFailure));
const SHA256_HEX = /^[0-9a-f]{64}$/;
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

function sameHead(a: { treeSize: number; rootHash: Uint8Array }, b: { treeSize: number; rootHash: Uint8Array } | undefined): boolean {
  return b !== undefined && a.treeSize === b.treeSize && Buffer.compare(Buffer.from(a.rootHash), Buffer.from(b.rootHash)) === 0;
}

/**
 * The verdict recorded in a SecAINode status, if any: the verified head when the status holds one
 * (treeSize equal to verifiedTreeSize, a key, no failure), and a failure when AuditVerified is False
 * for one of the transition failures.
 */
export function verdictFromStatus(status: SecAINodeStatus | undefined): AuditVerdict | undefined {
  const audit: NodeAuditStatus | undefined = status?.audit;
  const condition = findCondition(status?.conditions, 'AuditVerified');
  const verdict: AuditVerdict = {};
  if (
    audit &&
    audit.keyFingerprint &&
    SHA256_HEX.test(audit.keyFingerprint) &&
    SHA256_HEX.test(audit.rootHash) &&
    audit.verifiedTreeSize !== undefined &&
    (audit.failure !== undefined || audit.verifiedTreeSize === audit.treeSize)
  ) {
    const at = audit.verifiedAt ? Date.parse(audit.verifiedAt) : NaN;
    // With a failure, treeSize and rootHash show the rejected head: the verified root is gone, and
    // nothing needs it while the failure stands.
    if (audit.failure === undefined) {
      verdict.verified = {
        head: { treeSize: audit.treeSize, rootHash: ownedCopy(Buffer.from(audit.rootHash, 'hex')), keyFingerprint: audit.keyFingerprint },
        at: Number.isFinite(at) ? at : 0,
      };
    }
  }
  if (condition?.status === 'False' && FAILURE_REASONS.has(condition.reason)) {
    const at = Date.parse(condition.lastTransitionTime);
    verdict.failure = {
      reason: condition.reason as HeadTransitionFailure,
      message: audit?.failure ?? (condition.message.startsWith(AUDIT_FAILURE_PREFIX) ? condition.message.slice(AUDIT_FAILURE_PREFIX.length) : condition.message),
      at: Number.isFinite(at) ? at : 0,
      ...(audit && SHA256_HEX.test(audit.rootHash) ? { head: { treeSize: audit.treeSize, rootHash: audit.rootHash } } : {}),
    };
  }
  return verdict.verified || verdict.failure ? verdict : undefined;
}

export class AuditVerifier {
  private readonly states = new Map<string, NodeAuditState>();
  private readonly listeners = new Set<(node: string) => void>();
  private commander: AgentCommander | undefined;
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly verifications: Counter<'result'>;
  private readonly failures: Counter<'reason'>;

  constructor(private readonly opts: AuditVerifierOptions) {
    this.verifications = new Counter({
      name: 'secai_audit_verifications_total',
      help: 'Audit head transitions checked, by result (verified, failed, or error when the agent could not be asked).',
      labelNames: ['result'] as const,
      registers: [opts.registry],
    });
    this.failures = new Counter({
      name: 'secai_audit_verification_failures_total',
      help: 'Audit logs found inconsistent, by failure reason (each node counted once per incident).',
      labelNames: ['reason'] as const,
      registers: [opts.registry],
    });
    for (const reason of FAILURE_REASONS) this.failures.inc({ reason }, 0);
  }

  /** Starts asking agents for proofs (the channel is up: this replica leads). */
  attach(commander: AgentCommander): void {
    this.commander = commander;
  }

  /** Hears of every verdict change (the node controller writes it into status). */
  onVerdict(listener: (node: string) => void): void {
    this.listeners.add(listener);
  }

  /**
   * The verdict on the node's log for the SecAINode `uid`, once this process has looked at the node
   * (an empty verdict: nothing verified yet, as after a re-baseline); undefined before that, when
   * the status as it stands is all there is.
   */
  verdict(node: string, uid: string): AuditVerdict | undefined {
    const state = this.states.get(node);
    if (!state || state.uid !== uid) return undefined;
    return { ...(state.verified ? { verified: state.verified } : {}), ...(state.failure ? { failure: state.failure } : {}) };
  }

  /** Forgets the node's baseline and failure: its next head is trusted as on first contact. */
  rebaseline(node: string, uid: string): void {
    this.states.set(node, { uid, running: false, again: false });
    this.changed(node);
    this.kick(node);
  }

  forget(node: string): void {
    this.states.delete(node);
  }

  private changed(node: string): void {
    for (const listener of this.listeners) listener(node);
  }

  /** The node's state, loaded from its SecAINode status the first time (or when the SecAINode was re-created). */
  private stateOf(node: string): NodeAuditState | undefined {
    const secaiNode = this.opts.secaiNode(node);
    if (!secaiNode) return undefined;
    const known = this.states.get(node);
    if (known?.uid === secaiNode.uid) return known;
    const state: NodeAuditState = { uid: secaiNode.uid, running: false, again: false, ...verdictFromStatus(secaiNode.status) };
    this.states.set(node, state);
    return state;
  }

  /** Checks whether the node's latest head or connection needs verifying, and verifies it. Idempotent. */
  kick(node: string): void {
    const state = this.stateOf(node);
    if (!state || state.failure || !this.commander) return;
    if (state.running) {
      state.again = true;
      return;
    }
    if (!this.work(node, state)) return;
    state.running = true;
    void this.run(node, state);
  }

  /**
   * What there is to verify: a first head, a connection not checked yet, or a reported head that is
   * not the verified one and was not examined already (a report can trail a proof: a stale head
   * is settled by asking the agent, never taken as evidence on its own).
   */
  private work(node: string, state: NodeAuditState): boolean {
    const obs = this.opts.observations(node);
    if (!obs?.session) return false;
    const head = obs.report?.auditHead;
    const base = state.verified?.head;
    if (!base) return head !== undefined && !sameHead(head, state.examined);
    if (state.checkedSession !== obs.session.connectedAt) return true;
    if (!head || sameHead(head, state.examined)) return false;
    return !sameHead(head, base);
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

  private async run(node: string, state: NodeAuditState): Promise<void> {
    const release = await this.slot();
    try {
      do {
        state.again = false;
        await this.verifyOnce(node, state);
      } while (state.again && !state.failure && this.states.get(node) === state && this.work(node, state));
    } finally {
      state.running = false;
      release();
    }
  }

  private async verifyOnce(node: string, state: NodeAuditState): Promise<void> {
    const obs = this.opts.observations(node);
    const session = obs?.session;
    if (!session) return;
    const log = this.opts.logger.child({ node, component: 'audit-verifier' });
    const key = session.auditKey;
    const base = state.verified?.head;
    const reported = obs.report?.auditHead;
    if (reported) state.examined = { treeSize: reported.treeSize, rootHash: ownedCopy(reported.rootHash) };
    let outcome: { result: HeadTransitionResult; head: SignedTreeHead | undefined };
    try {
      if (base) outcome = await this.proveFrom(node, base, key);
      else if (reported) outcome = { result: verifyHeadTransition(undefined, reported, undefined, key), head: reported };
      else return;
    } catch (err) {
      this.verifications.inc({ result: 'error' });
      log.warn({ err: (err as Error).message }, 'could not ask the agent for its audit log; waiting for its next head');
      return;
    }
    if (this.states.get(node) !== state) return;
    state.checkedSession = session.connectedAt;
    const now = this.opts.clock.now();
    const { result, head } = outcome;
    if (result.ok) {
      this.verifications.inc({ result: 'verified' });
      const same = base && base.treeSize === result.verified.treeSize && Buffer.compare(base.rootHash, result.verified.rootHash) === 0;
      if (!same) {
        state.verified = { head: { ...result.verified, rootHash: ownedCopy(result.verified.rootHash) }, at: now };
        this.changed(node);
      }
      return;
    }
    this.verifications.inc({ result: 'failed' });
    this.failures.inc({ reason: result.failure });
    const shown = head && head.rootHash.length === 32 && Number.isSafeInteger(head.treeSize) && head.treeSize >= 0 ? { treeSize: head.treeSize, rootHash: hex(head.rootHash) } : undefined;
    state.failure = { reason: result.failure, message: result.message.slice(0, 1024), at: now, ...(shown ? { head: shown } : {}) };
    log.warn({ audit: 'audit.verification.failed', reason: result.failure, message: result.message }, 'audit log verification failed');
    this.changed(node);
    this.opts.onFailure?.(node, { ...(state.verified ? { verified: state.verified } : {}), failure: state.failure });
  }

  /** Asks for a proof from the verified size; an agent that cannot give one is asked for a head, which says why. */
  private async proveFrom(node: string, base: VerifiedHead, key: Buffer): Promise<{ result: HeadTransitionResult; head: SignedTreeHead | undefined }> {
    const commander = this.commander;
    if (!commander) throw new Error('no agent channel');
    const timeout = this.opts.commandTimeoutMs ?? 10_000;
    const answer = await commander.sendCommand(node, { $case: 'proveConsistency', value: { fromSize: base.treeSize } }, timeout);
    if (!answer.error && answer.body?.$case === 'consistencyProof') {
      const proof: ConsistencyProof = answer.body.value;
      if (!proof.toHead) return { result: { ok: false, failure: HeadTransitionFailure.ProofMissing, message: 'the consistency proof names no head' }, head: undefined };
      return { result: verifyHeadTransition(base, proof.toHead, proof, key), head: proof.toHead };
    }
    const refusal = answer.error || `answered ${answer.body?.$case ?? 'nothing'} instead of a proof`;
    const headAnswer = await commander.sendCommand(node, { $case: 'signTreeHead', value: {} }, timeout);
    if (!headAnswer.error && headAnswer.body?.$case === 'treeHead') {
      const head = headAnswer.body.value;
      const result = verifyHeadTransition(base, head, undefined, key);
      return { result: result.ok || result.failure !== HeadTransitionFailure.ProofMissing ? result : { ...result, message: `${result.message}: ${refusal}` }, head };
    }
    return {
      result: { ok: false, failure: HeadTransitionFailure.ProofMissing, message: `no proof from size ${base.treeSize}: ${refusal}; no signed head: ${headAnswer.error || 'none given'}` },
      head: undefined,
    };
  }
}
