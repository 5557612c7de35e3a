// Collects one node's evidence bundle when asked: an administrator (or `kubectl secai evidence`)
// sets the annotation secai.io/evidence-request=<id> on the SecAINode; the operator asks the agent
// for a consistency proof from the head it verified last, a quote over a fresh nonce and the
// trusted store's manifests, checks each as it would for status (a node cannot hand in evidence
// the operator would refuse), signs the bundle (evidence/bundle.ts) and writes it to the ConfigMap
// secai-evidence-<node> in its namespace with the request id; then it removes the annotation.
// Whatever cannot be gathered is written there as the request's error instead.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { verifyHeadTransition } from '../../../../api/audit/tree-head.js';
import { resourcePath } from '../../../../api/crd/paths.js';
import type { SecAINode, SecAINodeStatus } from '../../../../api/gen/crd-types.js';
import type { Command, CommandResult } from '../../../../api/gen/proto/secai/fleet/v1/agent.js';
import { removeAnnotation } from '../../attestation/annotations.js';
import { verifyQuote } from '../../attestation/quote-verification.js';
import { parseTpm2bPublic } from '../../attestation/tpm-structures.js';
import { signEvidence, type EvidenceParts, type ModelPart } from '../../evidence/bundle.js';
import type { EvidenceKey } from '../../evidence/evidence-key.js';
import type { AgentCommander } from '../../fleet/audit-verdicts.js';
import type { NodeObservations } from '../../fleet/intake.js';
import type { Clock } from '../../runtime/clock.js';
import type { ReconcileContext, ReconcileResult } from '../../runtime/controller.js';
import type { EventRecorder } from '../../runtime/events.js';
import { CONTENT_TYPE, type KubeClient } from '../../runtime/kube-client.js';

export const EVIDENCE_REQUEST_ANNOTATION = 'secai.io/evidence-request';
export const evidenceConfigMapName = (node: string) => `secai-evidence-${node}`;
const REQUEST_ID = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** A ConfigMap holds 1 MiB; the bundle stays well below. */
const MAX_BUNDLE_BYTES = 900 * 1024;
const COMMAND_TIMEOUT_MS = 30_000;
const MAX_MANIFEST_BYTES = 64 * 1024;

export interface EvidenceDeps {
  client: KubeClient;
  namespace: string;
  fieldManager: string;
  secaiNode(node: string): SecAINode | undefined;
  status(node: string, cached: SecAINode): SecAINodeStatus | undefined;
  observations(node: string): NodeObservations | undefined;
  commander(): AgentCommander | undefined;
  key(): Promise<EvidenceKey>;
  events: EventRecorder;
  clock: Clock;
}

class EvidenceError extends Error {}

export class EvidenceReconciler {
  constructor(private readonly deps: EvidenceDeps) {}

  async reconcile(node: string, rc: ReconcileContext): Promise<ReconcileResult | void> {
    const cached = this.deps.secaiNode(node);
    const requestId = cached?.metadata.annotations?.[EVIDENCE_REQUEST_ANNOTATION];
    if (!cached || requestId === undefined) return;
    const path = resourcePath('secainodes', node);
    if (!REQUEST_ID.test(requestId)) {
      await this.write(node, requestId.slice(0, 63), { error: `the request id ${JSON.stringify(requestId.slice(0, 64))} is not a lowercase name` });
      await removeAnnotation(this.deps.client, path, EVIDENCE_REQUEST_ANNOTATION, requestId);
      return;
    }
    const session = this.deps.observations(node)?.session;
    const commander = this.deps.commander();
    // The agent must be there to answer; the request waits for it.
    if (!session || !commander) return { requeueAfterMs: 5_000 };
    let data: Record<string, string>;
    try {
      const bundle = signEvidence(
        { node, requestId, collectedAt: new Date(this.deps.clock.now()).toISOString(), parts: await this.collect(node, cached, session.auditKey, commander, rc.log) },
        await this.deps.key(),
      );
      const text = JSON.stringify(bundle);
      if (text.length > MAX_BUNDLE_BYTES) throw new EvidenceError(`the bundle is ${text.length} bytes, more than a ConfigMap holds`);
      data = { 'bundle.json': text };
      await this.deps.events.record(cached, 'Normal', 'EvidenceCollected', 'CollectEvidence', `evidence bundle ${requestId} written to ConfigMap ${this.deps.namespace}/${evidenceConfigMapName(node)}`);
    } catch (error) {
      if (!(error instanceof EvidenceError)) throw error;
      data = { error: error.message };
      rc.log.warn({ requestId, err: error.message }, 'evidence could not be collected');
      await this.deps.events.record(cached, 'Warning', 'EvidenceFailed', 'CollectEvidence', `evidence bundle ${requestId}: ${error.message}`.slice(0, 1024));
    }
    await this.write(node, requestId, data);
    await removeAnnotation(this.deps.client, path, EVIDENCE_REQUEST_ANNOTATION, requestId);
  }

  private async write(node: string, requestId: string, data: Record<string, string>): Promise<void> {
    const name = evidenceConfigMapName(node);
    await this.deps.client.request({
      method: 'PATCH',
      path: `/api/v1/namespaces/${this.deps.namespace}/configmaps/${name}`,
      query: { fieldManager: this.deps.fieldManager, force: true },
      contentType: CONTENT_TYPE.apply,
      body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: this.deps.namespace, annotations: { [EVIDENCE_REQUEST_ANNOTATION]: requestId } }, data },
    });
  }

  private async ask(commander: AgentCommander, node: string, body: Command['body']): Promise<NonNullable<CommandResult['body']>> {
    let answer: CommandResult;
    try {
      answer = await commander.sendCommand(node, body, COMMAND_TIMEOUT_MS);
    } catch (error) {
      throw new EvidenceError(`the agent did not answer ${body?.$case}: ${(error as Error).message}`);
    }
    if (answer.error || !answer.body) throw new EvidenceError(`the agent refused ${body?.$case}: ${answer.error || 'an empty answer'}`);
    return answer.body;
  }

  private async collect(node: string, cached: SecAINode, auditKey: Buffer, commander: AgentCommander, log: Logger): Promise<EvidenceParts> {
    const status = this.deps.status(node, cached);
    const audit = status?.audit;
    if (!audit || audit.failure || audit.verifiedTreeSize === undefined || audit.verifiedTreeSize !== audit.treeSize || !audit.keyFingerprint) {
      throw new EvidenceError(audit?.failure ? `the node's audit log failed verification: ${audit.failure}` : 'the operator has verified no audit head of this node yet');
    }
    const base = { treeSize: audit.treeSize, rootHash: Buffer.from(audit.rootHash, 'hex'), keyFingerprint: audit.keyFingerprint };
    const proved = await this.ask(commander, node, { $case: 'proveConsistency', value: { fromSize: base.treeSize } });
    if (proved.$case !== 'consistencyProof' || !proved.value.toHead) throw new EvidenceError('the agent answered no consistency proof');
    const transition = verifyHeadTransition(base, proved.value.toHead, proved.value, auditKey);
    if (!transition.ok) throw new EvidenceError(`the node's audit log does not extend its verified head: ${transition.failure}: ${transition.message}`);

    const enrolment = status?.attestation?.enrolment;
    const quoted = status?.attestation?.quote;
    if (!enrolment || !quoted) throw new EvidenceError('the node has no enrolled TPM or no verified quote yet');
    const ak = parseTpm2bPublic(Buffer.from(enrolment.akPublic, 'base64'), 'the enrolled AK');
    const nonce = randomBytes(32);
    const pcrs = quoted.pcrs.map((p) => p.index).sort((a, b) => a - b);
    const issuedAt = this.deps.clock.now();
    const answer = await this.ask(commander, node, { $case: 'quote', value: { nonce, pcrBank: quoted.pcrBank, pcrs } });
    if (answer.$case !== 'quote') throw new EvidenceError('the agent answered no quote');
    const q = answer.value;
    const verdict = verifyQuote({
      ak,
      request: { nonce, issuedAt, bank: quoted.pcrBank, pcrs },
      usedNonces: [],
      evidence: { attest: Buffer.from(q.attest), signature: Buffer.from(q.signature), pcrValues: q.pcrValues.map((p) => ({ index: p.index, value: Buffer.from(p.value) })), eventLog: Buffer.from(q.eventLog) },
      expected: { expectedPcrs: [] },
      now: this.deps.clock.now(),
      nonceMaxAgeMs: COMMAND_TIMEOUT_MS,
    });
    if (!verdict.ok) throw new EvidenceError(`the node's quote does not verify: ${verdict.reason}: ${verdict.message}`);

    const listed = await this.ask(commander, node, { $case: 'readTrustedManifests', value: {} });
    if (listed.$case !== 'trustedManifests') throw new EvidenceError('the agent answered no manifests');
    const models: ModelPart[] = [];
    for (const m of listed.value.manifests) {
      if (m.manifestJson.length > MAX_MANIFEST_BYTES) throw new EvidenceError(`the manifest of ${m.sha256.slice(0, 16)} is larger than ${MAX_MANIFEST_BYTES} bytes`);
      try {
        models.push({ sha256: m.sha256, manifest: JSON.parse(Buffer.from(m.manifestJson).toString('utf8')) as Record<string, unknown> });
      } catch {
        throw new EvidenceError(`the manifest of ${m.sha256.slice(0, 16)} is not JSON`);
      }
    }
    log.info({ treeSize: proved.value.toHead.treeSize, pcrs, models: models.length }, 'evidence gathered');
    const head = proved.value.toHead;
    const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
    const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
    return {
      auditLog: {
        nodeKey: b64(auditKey),
        verified: { treeSize: base.treeSize, rootHash: hex(base.rootHash) },
        head: { treeSize: head.treeSize, rootHash: hex(head.rootHash), timestampUnixMillis: head.timestampUnixMillis, signature: b64(head.signature) },
        proof: proved.value.hashes.map(hex),
      },
      attestation: {
        ekFingerprint: enrolment.ekFingerprint,
        akPublic: enrolment.akPublic,
        nonce: hex(nonce),
        pcrBank: quoted.pcrBank,
        pcrs,
        attest: b64(q.attest),
        signature: b64(q.signature),
        pcrValues: q.pcrValues.map((p) => ({ index: p.index, value: hex(p.value) })),
        eventLog: b64(q.eventLog),
      },
      plan: {
        generation: status?.plan?.generation ?? 0,
        digest: status?.plan?.digest ?? '',
        appliedGeneration: status?.plan?.appliedGeneration ?? 0,
        appliedDigest: status?.plan?.appliedDigest ?? '',
        rulesetDigest: status?.duties?.find((d) => d.duty === 'egress')?.readBackDigest ?? status?.egress?.rulesetDigest ?? '',
      },
      models,
    };
  }
}
