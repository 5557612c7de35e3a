// What the operator concluded about each node's audit log: the head it verified last and, sticky,
// the failure it found. The audit log controller (controllers/auditlog/) produces verdicts; the node
// controller writes them into SecAINode status and re-baselines a node on request. Both share this
// store, and nothing else of each other.
//
// The last verified head lives in SecAINode status (treeSize, rootHash, keyFingerprint), read back
// from there by a restarted or newly elected operator, so an agent that comes back with an emptied,
// truncated, rewritten or forked log, or with another key, is caught whichever replica sees it.
// A failure is sticky: it stays (AuditVerified=False) until an administrator re-baselines the node
// with the secai.io/audit-rebaseline annotation (or deletes its SecAINode).
import { HeadTransitionFailure, type VerifiedHead } from '../../../api/audit/tree-head.js';
import type { NodeAuditStatus, SecAINodeStatus } from '../../../api/gen/crd-types.js';
import type { Command, CommandResult } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { findCondition } from '../runtime/conditions.js';
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

/** One node's verdict with what verification keeps between runs. */
export interface NodeAuditState extends AuditVerdict {
  uid: string;
  /** The session whose connection has been checked with a proof. */
  checkedSession?: number;
  /** The last reported head a verification started from. */
  examined?: { treeSize: number; rootHash: Uint8Array };
}

/** How AuditVerified's message starts when the log failed; the rest is the failure (status.audit.failure). */
export const AUDIT_FAILURE_PREFIX = 'the audit log failed verification: ';

export const FAILURE_REASONS: ReadonlySet<string> = new Set(Object.values(HeadTransitionFailure));
const SHA256_HEX = /^[0-9a-f]{64}$/;

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

export class AuditVerdicts {
  private readonly states = new Map<string, NodeAuditState>();
  private readonly verdictListeners = new Set<(node: string) => void>();
  private readonly workListeners = new Set<(node: string) => void>();

  /** The node's SecAINode as this process last saw or wrote it (uid and status). */
  constructor(private readonly secaiNode: (node: string) => { uid: string; status?: SecAINodeStatus } | undefined) {}

  /** Hears of every verdict change (the node controller writes it into status). */
  onVerdict(listener: (node: string) => void): void {
    this.verdictListeners.add(listener);
  }

  /** Hears of nodes whose log must be looked at again (the audit log controller). */
  onWork(listener: (node: string) => void): void {
    this.workListeners.add(listener);
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
    this.states.set(node, { uid });
    this.changed(node);
    for (const listener of this.workListeners) listener(node);
  }

  forget(node: string): void {
    this.states.delete(node);
  }

  /** Tells the node controller the verdict of `state` changed. */
  changed(node: string): void {
    for (const listener of this.verdictListeners) listener(node);
  }

  /** Whether `state` is still the node's (no re-baseline or re-creation came in meanwhile). */
  current(node: string, state: NodeAuditState): boolean {
    return this.states.get(node) === state;
  }

  /** The node's state, loaded from its SecAINode status the first time (or when the SecAINode was re-created). */
  stateOf(node: string): NodeAuditState | undefined {
    const secaiNode = this.secaiNode(node);
    if (!secaiNode) return undefined;
    const known = this.states.get(node);
    if (known?.uid === secaiNode.uid) return known;
    const state: NodeAuditState = { uid: secaiNode.uid, ...verdictFromStatus(secaiNode.status) };
    this.states.set(node, state);
    return state;
  }
}
