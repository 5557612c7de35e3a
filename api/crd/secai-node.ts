import { DriftKind, DUTY_NAMES, DutyReason } from '../proto/duty-results.js';
import { conditions, observedGeneration, sha256, timestamp } from './common.js';
import { modelNodeState } from './model.js';
import { conditionColumn, type ResourceDefinition } from './resource.js';
import { array, boolean, enumeration, integer, object, optional, required, string } from './schema.js';

export const SECURE_BOOT_STATES = ['Enabled', 'Disabled', 'Unknown'] as const;
export const DUTY_STATES = ['OK', 'Progressing', 'Drifted', 'Failed'] as const;
export const TOR_STATES = ['NotConfigured', 'Available', 'Unavailable'] as const;
export const SERVICE_NODE_STATES = ['Pending', 'Starting', 'Serving', 'Stopped', 'Failed'] as const;

const bigCount = (description: string) => integer(description, { minimum: 0, maximum: Number.MAX_SAFE_INTEGER });

export const secaiNodeSpec = object('SecAINodeSpec', 'Fleet-level controls for one node.', {
  cordoned: optional(
    boolean('Fleet containment: the node keeps enforcing egress, vault and audit, but serves no model.', { default: false }),
  ),
});

export const secaiNodeStatus = object('SecAINodeStatus', 'What the node reports about itself, as the operator verified it.', {
  observedGeneration: optional(observedGeneration()),
  agent: optional(
    object('AgentStatus', 'The node agent.', {
      version: optional(string('The agent version.', { maxLength: 64 })),
      protocolVersion: optional(integer('The agent channel protocol version.', { minimum: 0, maximum: 1000 })),
      connected: required(boolean('Whether the agent holds a channel to the operator now.')),
      lastSeen: optional(timestamp('When the operator last heard from the agent.')),
      capabilities: optional(
        array('What the node can do (for example nftables, tpm2, gpu).', string('A capability.', { maxLength: 64 }), {
          maxItems: 32,
          listType: 'set',
        }),
      ),
    }),
  ),
  plan: optional(
    object('NodePlanStatus', 'The plan the operator computed for the node and what the node applied.', {
      generation: required(bigCount('The generation of the latest plan.')),
      digest: required(sha256('The digest of the latest plan.')),
      appliedGeneration: optional(bigCount('The plan generation the node last applied.')),
      appliedDigest: optional(sha256('The digest of the plan the node last applied.')),
      appliedAt: optional(timestamp('When the node applied it.')),
      error: optional(string('Why the node could not apply the latest plan.', { maxLength: 1024 })),
    }),
  ),
  egress: optional(
    object('NodeEgressStatus', 'Egress enforcement on the node.', {
      mode: optional(enumeration('Enforce or Audit.', ['Enforce', 'Audit'])),
      rulesetDigest: optional(sha256('SHA-256 of the ruleset read back from the kernel.')),
      droppedPackets: optional(bigCount('Packets dropped by the default deny.')),
      auditedPackets: optional(bigCount('Packets that would have been dropped in Audit mode.')),
      allowEntries: optional(bigCount('Entries in the rendered allowlist.')),
    }),
  ),
  attestation: optional(
    object('NodeAttestationStatus', 'Boot state against the expected values in the node plan.', {
      secureBoot: required(enumeration('The Secure Boot state.', SECURE_BOOT_STATES)),
      tpmPresent: required(boolean('Whether a TPM 2.0 answers.')),
      pcrBank: optional(string('The PCR bank read.', { maxLength: 16 })),
      pcrDigest: optional(sha256('SHA-256 over the live PCR values that the policy names.')),
      mismatchedPcrs: optional(
        array('PCRs whose live value differs from the expected one.', integer('A PCR index.', { minimum: 0, maximum: 23 }), {
          maxItems: 24,
          listType: 'set',
        }),
      ),
      checkedAt: optional(timestamp('When the node last measured.')),
      secureBootVerified: optional(boolean('Whether secureBoot comes from a boot event log that replays to a verified quote of PCR 7 (otherwise it is what the agent reads from efivarfs).')),
      enrolment: optional(
        object('NodeAttestationEnrolment', 'The TPM keys the operator enrolled: the EK, and the AK proven by credential activation to live in the same TPM.', {
          ekFingerprint: required(sha256('SHA-256 of the endorsement key (its SubjectPublicKeyInfo).')),
          ekCertificate: optional(
            object('NodeEndorsementCertificate', 'The EK certificate from the TPM, when it has one.', {
              subject: required(string('Its subject.', { maxLength: 256 })),
              issuer: required(string('Its issuer.', { maxLength: 256 })),
              serial: required(string('Its serial number (hex).', { maxLength: 64 })),
              trusted: required(boolean('Whether it chains to one of the fleet\'s EK CAs.')),
            }),
          ),
          akPublic: required(string('The AK public area (TPM2B_PUBLIC, base64).', { maxLength: 1400, pattern: '^[A-Za-z0-9+/]+={0,2}$' })),
          akName: required(string('The AK Name (hex): its name algorithm and the digest of its public area.', { maxLength: 132, pattern: '^[0-9a-f]+$' })),
          enrolledAt: required(timestamp('When credential activation succeeded.')),
        }),
      ),
      quote: optional(
        object('NodeAttestationQuote', 'The last quote the operator verified.', {
          verifiedAt: required(timestamp('When it was verified.')),
          pcrBank: required(string('The quoted PCR bank.', { maxLength: 16 })),
          pcrs: required(
            array(
              'The quoted PCR values.',
              object('QuotedPcr', 'One quoted PCR.', {
                index: required(integer('The PCR index.', { minimum: 0, maximum: 23 })),
                value: required(string('Its value (hex).', { maxLength: 128, pattern: '^[0-9a-f]+$' })),
              }),
              { maxItems: 24, listType: 'map', listMapKeys: ['index'] },
            ),
          ),
          resetCount: optional(integer('The TPM\'s reset count (it changes with every reboot).', { minimum: 0, maximum: 4294967295 })),
          eventLogEvents: optional(integer('Events in the boot event log that replayed to the quote; absent without a log.', { minimum: 0, maximum: 1000000 })),
          replayedPcrs: optional(
            array('Quoted PCRs the event log explains.', integer('A PCR index.', { minimum: 0, maximum: 23 }), { maxItems: 24, listType: 'set' }),
          ),
        }),
      ),
      failure: optional(string('Why the last enrolment or quote failed; the Attested condition\'s reason names the check.', { maxLength: 1024 })),
    }),
  ),
  vault: optional(
    object('NodeVaultStatus', 'The encrypted vault on the node.', {
      encrypted: required(boolean('Whether a LUKS header was found.')),
      sealed: required(boolean('Whether the key is sealed to the TPM with the required PCRs.')),
      locked: required(boolean('Whether the vault is closed.')),
      compliant: required(boolean('Whether it satisfies the applied VaultPolicy.')),
      policy: optional(string('The VaultPolicy applied to the node.', { maxLength: 253 })),
      lockEpoch: optional(bigCount('The last lock request the node honoured.')),
      reasons: optional(
        array('Why it is not compliant, one reason per failing field.', string('A reason.', { maxLength: 256 }), { maxItems: 32 }),
      ),
    }),
  ),
  duties: optional(
    array(
      'Each duty of the agent (a loop that re-reads the node and converges on the plan) as it last ended.',
      object('NodeDutyStatus', 'One duty on this node.', {
        duty: required(enumeration('egress, models, inference, vault, attestation, audit or tor.', DUTY_NAMES)),
        state: required(enumeration('OK, Progressing, Drifted (a change found, its repair not yet read back) or Failed.', DUTY_STATES)),
        reason: required(enumeration('A stable code of the outcome.', Object.values(DutyReason))),
        message: optional(string('A human-readable explanation.', { maxLength: 1024 })),
        planGeneration: optional(bigCount('The plan generation the duty last converged on.')),
        readBackDigest: optional(sha256('Egress: SHA-256 of the table read back from the kernel at the last check.')),
        checkedAt: optional(timestamp('When the duty last ran.')),
        consecutiveFailures: optional(integer('Failed runs in a row (the duty retries with backoff).', { minimum: 0, maximum: 1_000_000 })),
        drifts: optional(bigCount('Drifts the duty found since the agent started.')),
        lastDrift: optional(
          object('NodeDriftStatus', 'The latest change the agent did not make.', {
            kind: required(enumeration('What changed.', Object.values(DriftKind))),
            detail: optional(string('What differed.', { maxLength: 512 })),
            detectedAt: required(timestamp('When the agent found it.')),
            repairedAt: optional(timestamp('When the repair was read back in force (or the changed state was judged, where nothing can be repaired).')),
          }),
        ),
      }),
      { maxItems: 8, listType: 'map', listMapKeys: ['duty'] },
    ),
  ),
  tor: optional(
    object('NodeTorStatus', "The node's Tor client, when its plan has via: Tor entries.", {
      state: required(enumeration('NotConfigured, Available (via: Tor traffic flows) or Unavailable (it is refused, never sent direct).', TOR_STATES)),
      bootstrapPercent: optional(integer("Tor's bootstrap progress.", { minimum: 0, maximum: 100 })),
      reason: optional(string('A stable code: Bootstrapped, Bootstrapping, NoConsensus, NotRunning, Crashing, Starting.', { maxLength: 64 })),
      message: optional(string('A human-readable explanation.', { maxLength: 1024 })),
      restarts: optional(bigCount('Times the agent restarted the Tor client.')),
    }),
  ),
  models: optional(modelNodeState),
  inference: optional(
    array(
      'The services the plan asks this node to serve.',
      object('NodeServiceStatus', 'One service on this node.', {
        service: required(string('The InferenceService name.', { maxLength: 253 })),
        model: required(string('The Model it serves.', { maxLength: 253 })),
        state: required(enumeration('Pending, Starting, Serving, Stopped or Failed.', SERVICE_NODE_STATES)),
        reason: optional(string('Why it is not serving.', { maxLength: 128 })),
        message: optional(string('A human-readable explanation.', { maxLength: 1024 })),
        gpuLayers: optional(integer('GPU layers in effect.', { minimum: -1, maximum: 1024 })),
      }),
      { maxItems: 64, listType: 'map', listMapKeys: ['service'] },
    ),
  ),
  audit: optional(
    object('NodeAuditStatus', 'The node\'s tamper-evident audit log, as the operator verified it.', {
      treeSize: required(bigCount('Entries in the latest signed tree head.')),
      rootHash: required(sha256('Merkle root of the latest signed tree head.')),
      verifiedTreeSize: optional(bigCount('The tree size the operator last proved consistent.')),
      verifiedAt: optional(timestamp('When the operator last verified a consistency proof.')),
      keyFingerprint: optional(sha256('SHA-256 of the node audit public key.')),
      failure: optional(string('Why verification failed.', { maxLength: 1024 })),
    }),
  ),
  conditions: optional(conditions()),
});

export const secaiNodeResource: ResourceDefinition = {
  kind: 'SecAINode',
  plural: 'secainodes',
  singular: 'secainode',
  shortNames: ['secnode'],
  description: 'One enrolled SecAI node (named after its Node), written by the operator from what the node agent reports.',
  spec: secaiNodeSpec,
  status: secaiNodeStatus,
  printerColumns: [
    { name: 'Connected', type: 'boolean', jsonPath: '.status.agent.connected', description: 'Agent connected.' },
    conditionColumn('Ready'),
    conditionColumn('Compliant'),
    conditionColumn('Attested'),
    conditionColumn('AuditVerified', 'Audit'),
    { name: 'Plan', type: 'integer', jsonPath: '.status.plan.appliedGeneration', description: 'Applied plan generation.' },
    { name: 'Tor', type: 'string', jsonPath: '.status.tor.state', description: 'The Tor client.', priority: 1 },
    { name: 'Reason', type: 'string', jsonPath: '.status.conditions[?(@.type=="Compliant")].reason', description: 'Why the node is (not) compliant.', priority: 1 },
    { name: 'Cordoned', type: 'boolean', jsonPath: '.spec.cordoned', description: 'Fleet containment.', priority: 1 },
    { name: 'Version', type: 'string', jsonPath: '.status.agent.version', description: 'Agent version.', priority: 1 },
  ],
};
