// Verifies one node's audit log as it grows: for each new signed tree head the node reports, and
// each time its agent (re)connects, the operator asks the agent for a consistency proof from the
// last head it verified and checks the transition with api/audit (signature, key, size, fork,
// proof). Only a verdict the agent signed or refused counts: a command that failed (timed out, the
// channel closed) throws, and the work queue retries with backoff while the agent stays connected.
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { HeadTransitionFailure, verifyHeadTransition, type HeadTransitionResult, type VerifiedHead } from '../../../../api/audit/tree-head.js';
import type { ConsistencyProof, SignedTreeHead } from '../../../../api/gen/proto/secai/fleet/v1/agent.js';
import { FAILURE_REASONS, type AgentCommander, type AuditVerdict, type AuditVerdicts, type NodeAuditState } from '../../fleet/audit-verdicts.js';
import type { NodeObservations } from '../../fleet/intake.js';
import { ownedCopy } from '../../fleet/report-status.js';
import type { Clock } from '../../runtime/clock.js';
import type { ReconcileContext } from '../../runtime/controller.js';

/** What the audit log reconciler uses, and nothing else. */
export interface AuditLogDeps {
  verdicts: AuditVerdicts;
  observations(node: string): NodeObservations | undefined;
  /** The channel, once this replica leads. */
  commander(): AgentCommander | undefined;
  clock: Clock;
  registry: Registry;
  /** Called when the node's log failed; it decides whether to lock the node's vault. */
  onFailure?: (node: string, verdict: AuditVerdict) => void;
  commandTimeoutMs?: number;
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

function sameHead(a: { treeSize: number; rootHash: Uint8Array }, b: { treeSize: number; rootHash: Uint8Array } | undefined): boolean {
  return b !== undefined && a.treeSize === b.treeSize && Buffer.compare(Buffer.from(a.rootHash), Buffer.from(b.rootHash)) === 0;
}

export class AuditLogReconciler {
  private readonly verifications: Counter<'result'>;
  private readonly failures: Counter<'reason'>;

  constructor(private readonly deps: AuditLogDeps) {
    this.verifications = new Counter({
      name: 'secai_audit_verifications_total',
      help: 'Audit head transitions checked, by result (verified, failed, or error when the agent could not be asked).',
      labelNames: ['result'] as const,
      registers: [deps.registry],
    });
    this.failures = new Counter({
      name: 'secai_audit_verification_failures_total',
      help: 'Audit logs found inconsistent, by failure reason (each node counted once per incident).',
      labelNames: ['reason'] as const,
      registers: [deps.registry],
    });
    for (const reason of FAILURE_REASONS) this.failures.inc({ reason }, 0);
  }

  async reconcile(node: string, rc: ReconcileContext): Promise<void> {
    const state = this.deps.verdicts.stateOf(node);
    if (!state || state.failure || !this.deps.commander()) return;
    if (!this.work(node, state)) return;
    await this.verify(node, state, rc.log);
  }

  /**
   * What there is to verify: a first head, a connection not checked yet, or a reported head that is
   * not the verified one and was not examined already (a report can trail a proof: a stale head
   * is settled by asking the agent, never taken as evidence on its own).
   */
  private work(node: string, state: NodeAuditState): boolean {
    const obs = this.deps.observations(node);
    if (!obs?.session) return false;
    const head = obs.report?.auditHead;
    const base = state.verified?.head;
    if (!base) return head !== undefined && !sameHead(head, state.examined);
    if (state.checkedSession !== obs.session.connectedAt) return true;
    if (!head || sameHead(head, state.examined)) return false;
    return !sameHead(head, base);
  }

  private async verify(node: string, state: NodeAuditState, log: Logger): Promise<void> {
    const obs = this.deps.observations(node);
    const session = obs?.session;
    if (!session) return;
    const key = session.auditKey;
    const base = state.verified?.head;
    const reported = obs.report?.auditHead;
    let outcome: { result: HeadTransitionResult; head: SignedTreeHead | undefined };
    try {
      if (base) outcome = await this.proveFrom(node, base, key);
      else if (reported) outcome = { result: verifyHeadTransition(undefined, reported, undefined, key), head: reported };
      else return;
    } catch (err) {
      this.verifications.inc({ result: 'error' });
      throw new Error(`could not ask the agent for its audit log: ${(err as Error).message}`);
    }
    if (!this.deps.verdicts.current(node, state)) return;
    if (reported) state.examined = { treeSize: reported.treeSize, rootHash: ownedCopy(reported.rootHash) };
    state.checkedSession = session.connectedAt;
    const now = this.deps.clock.now();
    const { result, head } = outcome;
    if (result.ok) {
      this.verifications.inc({ result: 'verified' });
      const same = base && base.treeSize === result.verified.treeSize && Buffer.compare(base.rootHash, result.verified.rootHash) === 0;
      if (!same) {
        state.verified = { head: { ...result.verified, rootHash: ownedCopy(result.verified.rootHash) }, at: now };
        this.deps.verdicts.changed(node);
      }
      return;
    }
    this.verifications.inc({ result: 'failed' });
    this.failures.inc({ reason: result.failure });
    const shown = head && head.rootHash.length === 32 && Number.isSafeInteger(head.treeSize) && head.treeSize >= 0 ? { treeSize: head.treeSize, rootHash: hex(head.rootHash) } : undefined;
    state.failure = { reason: result.failure, message: result.message.slice(0, 1024), at: now, ...(shown ? { head: shown } : {}) };
    log.warn({ audit: 'audit.verification.failed', reason: result.failure, message: result.message }, 'audit log verification failed');
    this.deps.verdicts.changed(node);
    this.deps.onFailure?.(node, { ...(state.verified ? { verified: state.verified } : {}), failure: state.failure });
  }

  /** Asks for a proof from the verified size; an agent that cannot give one is asked for a head, which says why. */
  private async proveFrom(node: string, base: VerifiedHead, key: Buffer): Promise<{ result: HeadTransitionResult; head: SignedTreeHead | undefined }> {
    const commander = this.deps.commander();
    if (!commander) throw new Error('no agent channel');
    const timeout = this.deps.commandTimeoutMs ?? 10_000;
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
