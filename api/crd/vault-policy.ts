import { conditions, count, labelSelector, observedGeneration, sha256 } from './common.js';
import { conditionColumn, type ResourceDefinition } from './resource.js';
import { array, boolean, enumeration, integer, object, optional, required, string } from './schema.js';

export const TPM2_MODES = ['Required', 'Optional', 'Disabled'] as const;
export const PCR_BANKS = ['sha256', 'sha384'] as const;
/** SecAI OS binds the vault key to PCRs 0, 2, 4 and 7 (firmware, option ROMs, boot loader, Secure Boot state). */
export const DEFAULT_PCRS = [0, 2, 4, 7];

const pcrIndex = integer('A PCR index, 0 to 23.', { minimum: 0, maximum: 23, format: 'int32' });

export const vaultPolicySpec = object('VaultPolicySpec', 'What the encrypted vault of each selected node must look like.', {
  nodeSelector: optional(labelSelector('LabelSelector', 'Fleet nodes this policy applies to; empty selects every fleet node.')),
  priority: optional(
    integer(
      'When several VaultPolicies select a node, the one with the highest priority applies (ties: the alphabetically first name); the others report the conflict.',
      { minimum: 0, maximum: 1000, default: 0 },
    ),
  ),
  luks: required(
    object('VaultLUKS', 'Required LUKS header parameters.', {
      type: optional(enumeration('The LUKS header version.', ['luks2'], { default: 'luks2' })),
      cipher: optional(
        string('The required cipher specification, as cryptsetup names it.', {
          maxLength: 64,
          pattern: '^[a-z0-9]+(-[a-z0-9]+)*$',
          default: 'aes-xts-plain64',
        }),
      ),
      minKeySizeBits: optional(
        integer('The smallest acceptable key size in bits (512 for AES-256 in XTS mode).', {
          minimum: 256,
          maximum: 512,
          default: 512,
          rules: [{ rule: 'self in [256, 512]', message: 'must be 256 or 512' }],
        }),
      ),
      pbkdf: optional(enumeration('The required key-derivation function of every keyslot.', ['argon2id'], { default: 'argon2id' })),
      minPbkdfMemoryKiB: optional(
        integer('The smallest acceptable PBKDF memory cost per keyslot, in KiB.', {
          minimum: 32768,
          maximum: 4194304,
          default: 65536,
        }),
      ),
    }),
  ),
  tpm2: optional(
    object('VaultTPM2', 'Whether the vault key must be sealed to the TPM, and to which PCRs.', {
      mode: optional(enumeration('Required, Optional or Disabled.', TPM2_MODES, { default: 'Optional' })),
      pcrBank: optional(enumeration('The PCR bank the policy uses.', PCR_BANKS, { default: 'sha256' })),
      pcrs: optional(
        array('PCR indexes the key must be bound to (default 0, 2, 4, 7).', pcrIndex, {
          maxItems: 24,
          minItems: 1,
          listType: 'set',
          default: DEFAULT_PCRS,
        }),
      ),
    }),
  ),
  autoLock: optional(
    object('VaultAutoLock', 'Locking an idle vault.', {
      idleMinutes: required(
        integer('Lock after this many idle minutes; 0 disables auto-lock.', { minimum: 0, maximum: 1440, default: 30 }),
      ),
    }),
  ),
  relockOnIncident: optional(boolean('Lock the vault when the node raises a security incident.', { default: true })),
  lockEpoch: optional(
    integer(
      'Raise this number to ask every selected node to lock its vault once now. The operator can ask for a lock; it can never unlock (unlock is local-console only).',
      { minimum: 0, maximum: Number.MAX_SAFE_INTEGER, default: 0 },
    ),
  ),
  attestation: optional(
    object('VaultAttestation', 'What a healthy boot of a selected node looks like.', {
      requireSecureBoot: optional(boolean('Nodes without Secure Boot enabled are not attested.', { default: false })),
      expectedPcrs: optional(
        array(
          'Expected PCR values in the policy bank; a node whose live values differ is not attested.',
          object('ExpectedPCR', 'One expected PCR value.', {
            index: required(pcrIndex),
            value: required(sha256('The expected PCR value, lowercase hex.')),
          }),
          { maxItems: 24, listType: 'map', listMapKeys: ['index'] },
        ),
      ),
    }),
  ),
});

export const vaultPolicyStatus = object('VaultPolicyStatus', 'Fleet-wide compliance with this policy.', {
  observedGeneration: optional(observedGeneration()),
  nodes: optional(
    object('VaultNodeCounts', 'How many selected nodes comply.', {
      matched: required(count('Fleet nodes the selector matches.')),
      applied: required(count('Nodes where this policy wins over other matching policies.')),
      compliant: required(count('Nodes whose vault satisfies the policy.')),
      nonCompliant: required(count('Nodes whose vault does not.')),
      unknown: required(count('Nodes that have not reported yet.')),
    }),
  ),
  nonCompliantReasons: optional(
    array(
      'Why nodes are not compliant, with how many nodes give each reason (per-node detail is on SecAINode).',
      object('ReasonCount', 'A reason and how many nodes report it.', {
        reason: required(string('The stable reason code.', { maxLength: 128 })),
        nodes: required(count('Nodes that report it.')),
      }),
      { maxItems: 32, listType: 'map', listMapKeys: ['reason'] },
    ),
  ),
  conditions: optional(conditions()),
});

export const vaultPolicyResource: ResourceDefinition = {
  kind: 'VaultPolicy',
  plural: 'vaultpolicies',
  singular: 'vaultpolicy',
  shortNames: ['secvault'],
  description: 'The required configuration of the encrypted vault on selected SecAI nodes, and their expected boot state.',
  spec: vaultPolicySpec,
  status: vaultPolicyStatus,
  printerColumns: [
    { name: 'Matched', type: 'integer', jsonPath: '.status.nodes.matched', description: 'Nodes selected.' },
    { name: 'Compliant', type: 'integer', jsonPath: '.status.nodes.compliant', description: 'Compliant nodes.' },
    { name: 'NonCompliant', type: 'integer', jsonPath: '.status.nodes.nonCompliant', description: 'Non-compliant nodes.' },
    conditionColumn('Ready'),
    { name: 'TPM2', type: 'string', jsonPath: '.spec.tpm2.mode', description: 'TPM2 sealing.', priority: 1 },
  ],
};
