import { conditions, count, DNS_SUBDOMAIN, labelSelector, objectKeyRef, observedGeneration, sha256 } from './common.js';
import { conditionColumn, type ResourceDefinition } from './resource.js';
import { array, boolean, enumeration, integer, number, object, optional, required, string } from './schema.js';

export const MODEL_PHASES = ['Pending', 'Distributing', 'Trusted', 'Rejected', 'Revoked'] as const;
/** Largest artifact the fleet accepts (as a SecAI OS node: 64 GiB). */
export const MAX_MODEL_BYTES = 64 * 1024 ** 3;
/** Highest smoke-test score a Model may allow (SecAI OS `smoke_test_max_score` bound). */
export const MAX_SMOKE_SCORE = 0.3;

// Hosts are lowercase DNS names or IPv4 addresses; no userinfo, query or fragment (SecAI OS
// source policy), so the URL a node fetches is exactly the one an administrator reviewed. CEL rules
// rather than one pattern, so that the API server says which of these is wrong.
const URL_RULES = [
  { rule: "self.startsWith('https://') || self.startsWith('http://') || self.startsWith('file:///')", message: 'must be an https://, http:// or file:/// URL' },
  { rule: "!self.matches('^https?://[^/]*@')", message: 'must not carry credentials (user@host)' },
  { rule: "!self.contains('?') && !self.contains('#')", message: 'must not have a query or a fragment' },
  { rule: "!self.contains('/../') && !self.endsWith('/..')", message: 'must not contain ".." path segments' },
  {
    rule: "!self.startsWith('http') || self.matches(r'^https?://[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[0-9]{1,5})?(/[-A-Za-z0-9._~%!$&()*+,;=:@/]*)?$')",
    message: 'must name a lowercase host, an optional port and a plain path',
  },
  { rule: "!self.startsWith('file:') || self.matches(r'^file:///[-A-Za-z0-9._~%/+=@]+$')", message: 'must be an absolute file:/// path of plain characters' },
];

const source = object(
  'ModelSource',
  'Where the artifact comes from: exactly one of url or oci.',
  {
    url: optional(
      string(
        'An https:// URL, an http:// URL when allowInsecureHTTP is set (lab only), or file:/// for a path in the node-local import inbox. No credentials, query or fragment.',
        {
          maxLength: 2048,
          minLength: 9,
          rules: URL_RULES,
        },
      ),
    ),
    revision: optional(
      string('A revision of a revision-pinned hub (for example a 40-hex commit).', {
        maxLength: 128,
        minLength: 1,
        pattern: '^[A-Za-z0-9._/-]+$',
      }),
    ),
    oci: optional(
      object(
        'ModelOciSource',
        'An OCI artifact in a registry, pulled by manifest digest: a CNCF ModelPack (a raw GGUF weight layer) or a Docker model (a GGUF layer). The GGUF layer\'s digest must be spec.sha256.',
        {
          registry: required(string('The registry host and optional port, for example registry.example.com:5000.', { maxLength: 253, minLength: 1, pattern: '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[0-9]{1,5})?$' })),
          repository: required(
            string('The repository, for example models/llama-3.2-1b.', { maxLength: 255, minLength: 1, pattern: '^[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*$' }),
          ),
          digest: required(string('The manifest digest the node pulls (tags move; digests do not).', { maxLength: 71, minLength: 71, pattern: '^sha256:[0-9a-f]{64}$' })),
          tag: optional(string('The tag the digest was read from, for people; the node never resolves it.', { maxLength: 128, minLength: 1, pattern: '^[A-Za-z0-9_][A-Za-z0-9._-]*$' })),
          pullSecretRef: optional(
            object(
              'ModelOciPullSecretRef',
              "A Secret of type kubernetes.io/dockerconfigjson in the operator's namespace (Models are cluster-scoped and the operator reads Secrets of its own namespace only) whose auths entry for the registry the operator puts into the plan of each node that pulls the Model, over the node's authenticated channel. The node sends it only over https (or to this exact registry when allowInsecureHTTP is set), never across a redirect to another origin, and never logs it.",
              { name: required(string('The name of the Secret.', { maxLength: 253, minLength: 1, pattern: DNS_SUBDOMAIN })) },
            ),
          ),
        },
      ),
    ),
    allowInsecureHTTP: optional(
      boolean('Allows an http:// URL, or plain-HTTP access to the OCI registry. For isolated labs only: the digest pin still protects integrity.', { default: false }),
    ),
  },
  {
    rules: [
      { rule: 'has(self.url) != has(self.oci)', message: 'exactly one of url or oci must be set' },
      {
        rule: "!has(self.url) || !self.url.startsWith('http://') || (has(self.allowInsecureHTTP) && self.allowInsecureHTTP)",
        message: 'an http:// source needs allowInsecureHTTP: true (lab only); use https:// or file:///',
        fieldPath: '.url',
      },
    ],
  },
);

const modelSigning = object(
  'ModelSigningSignature',
  'The bundle is an OpenSSF model signature (the model-signing package, predicate https://model_signing/signature/v1.0: a signed SHA-256 manifest of the model\'s files) rather than a cosign bundle over the artifact. It is verified with publicKey (the key method), keyless (the sigstore method) or certificateChainConfigMapKeyRef (the certificate method).',
  {
    file: optional(
      string('The artifact\'s path in the signed manifest, for a model signed as a directory (a model repository). Omitted: the model was signed as this one file.', {
        maxLength: 1024,
        minLength: 1,
        pattern: '^[A-Za-z0-9._+=@-][A-Za-z0-9._+=@/-]*$',
        rules: [{ rule: "!self.split('/').exists(s, s == '..' || s == '.' || s == '')", message: 'must be a relative path without empty, "." or ".." segments' }],
      }),
    ),
    certificateChainConfigMapKeyRef: optional(
      objectKeyRef('ConfigMapKeyRef', 'The certificate method: a ConfigMap key holding the PEM CA chain (intermediates and root) the signing certificate must chain to.', 'ConfigMap'),
    ),
  },
);

const signature = object(
  'ModelSignature',
  'A signature over the artifact and how to verify it, offline: a sigstore bundle (cosign sign-blob or attest-blob) or an OpenSSF model signature (modelSigning).',
  {
    bundle: required(
      object(
        'SignatureBundleSource',
        'Where the sigstore bundle is. Exactly one of inline, configMapKeyRef, url or oci.',
        {
          inline: optional(string('The bundle JSON itself.', { maxLength: 65536, minLength: 2 })),
          configMapKeyRef: optional(objectKeyRef('ConfigMapKeyRef', 'A ConfigMap key that holds the bundle JSON.', 'ConfigMap')),
          url: optional(
            string('An https:// URL the node fetches the bundle from (through its egress policy).', {
              maxLength: 2048,
              pattern: "^https://[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[0-9]{1,5})?(/[-A-Za-z0-9._~%!$&'()*+,;=:@/]*)?$",
            }),
          ),
          oci: optional(
            boolean(
              "true: the signature is cosign's (cosign sign --key), stored beside the OCI artifact in its registry (referrers API or the sha256-<digest> tag) and verified by the node with publicKey before the model is pulled. Needs source.oci.",
              { rules: [{ rule: 'self', message: 'oci is set to true or left out' }] },
            ),
          ),
        },
        {
          rules: [
            {
              rule: '[has(self.inline), has(self.configMapKeyRef), has(self.url), has(self.oci)].filter(x, x).size() == 1',
              message: 'exactly one of inline, configMapKeyRef, url or oci must be set',
            },
          ],
        },
      ),
    ),
    publicKey: optional(
      object(
        'SignaturePublicKey',
        'Verify with a public key. Exactly one of pem or configMapKeyRef.',
        {
          pem: optional(
            string('A PEM-encoded public key (SubjectPublicKeyInfo).', {
              maxLength: 8192,
              rules: [{ rule: "self.startsWith('-----BEGIN PUBLIC KEY-----')", message: 'must be a PEM "PUBLIC KEY" block' }],
            }),
          ),
          configMapKeyRef: optional(objectKeyRef('ConfigMapKeyRef', 'A ConfigMap key that holds the PEM public key.', 'ConfigMap')),
        },
        {
          rules: [
            {
              rule: 'has(self.pem) != has(self.configMapKeyRef)',
              message: 'exactly one of pem or configMapKeyRef must be set',
            },
          ],
        },
      ),
    ),
    modelSigning: optional(modelSigning),
    keyless: optional(
      object('SignatureKeyless', 'Verify a keyless (Fulcio certificate) signature against a supplied trusted root.', {
        issuer: required(
          string('The OIDC issuer the signing certificate must name, exactly.', {
            maxLength: 512,
            pattern: '^https://[^\\s]+$',
          }),
        ),
        subjectPattern: required(
          string(
            'A regular expression for the certificate subject (SAN); it must be anchored with ^ and $ so that it cannot match a longer identity.',
            {
              maxLength: 1024,
              minLength: 3,
              rules: [
                {
                  rule: "self.startsWith('^') && self.endsWith('$') && !self.endsWith('\\\\$')",
                  message: 'must be anchored: start with ^ and end with an unescaped $',
                },
              ],
            },
          ),
        ),
        trustedRootConfigMapKeyRef: required(
          objectKeyRef('ConfigMapKeyRef', 'A ConfigMap key holding the sigstore trusted_root.json to verify against.', 'ConfigMap'),
        ),
      }),
    ),
  },
  {
    rules: [
      {
        rule: '[has(self.publicKey), has(self.keyless), has(self.modelSigning) && has(self.modelSigning.certificateChainConfigMapKeyRef)].filter(x, x).size() == 1',
        message: 'exactly one of publicKey, keyless or modelSigning.certificateChainConfigMapKeyRef must be set',
      },
    ],
  },
);

const quarantine = object('ModelQuarantine', 'Overrides of the node quarantine policy. They can only make it stricter.', {
  maxSizeBytes: optional(
    integer('The largest artifact to accept, in bytes (at most the fleet limit of 64 GiB).', {
      minimum: 1,
      maximum: MAX_MODEL_BYTES,
    }),
  ),
  smokeTest: optional(
    object('ModelSmokeTest', 'The behavioural smoke test: the model answers adversarial prompts in the inference sandbox.', {
      enabled: required(boolean('Run the smoke test before the model is trusted.')),
      maxScore: optional(
        number('Highest tolerated share of flagged answers, 0 to 0.3. Critical categories must never be flagged.', {
          minimum: 0,
          maximum: MAX_SMOKE_SCORE,
          default: MAX_SMOKE_SCORE,
        }),
      ),
    }),
  ),
});

export const modelSpec = object(
  'ModelSpec',
  'The artifact, its pin, how it is verified and where it must be held.',
  {
    source: required(source),
    format: required(
      enumeration('The file format. Only gguf is supported now; safetensors is planned.', ['gguf'], {
        rules: [{ rule: 'self == oldSelf', message: 'format is immutable' }],
      }),
    ),
    sha256: required(
      sha256('The SHA-256 of the artifact, 64 lowercase hex digits. The node rejects any other bytes.', [
        { rule: 'self == oldSelf', message: 'sha256 is immutable; create a new Model for another artifact' },
      ]),
    ),
    sizeBytes: optional(integer('The exact size of the artifact in bytes.', { minimum: 1, maximum: MAX_MODEL_BYTES })),
    signature: optional(signature),
    quarantine: optional(quarantine),
    placement: optional(
      object('ModelPlacement', 'Which nodes must hold the model (in addition to nodes whose InferenceServices use it).', {
        nodeSelector: optional(labelSelector('LabelSelector', 'Fleet nodes whose labels match; empty selects every fleet node.')),
      }),
    ),
    revoked: optional(
      boolean('Revokes the artifact fleet-wide: every node contains it and stops serving it. Cannot be undone.', {
        default: false,
      }),
    ),
    revokedReason: optional(string('Why the artifact was revoked (shown in status and audit logs).', { maxLength: 1024, minLength: 1 })),
  },
  {
    rules: [
      {
        rule: '!has(self.revoked) || !self.revoked || has(self.revokedReason)',
        message: 'revokedReason is required when revoked is true',
        fieldPath: '.revokedReason',
      },
      {
        rule: '!has(oldSelf.revoked) || !oldSelf.revoked || (has(self.revoked) && self.revoked)',
        message: 'revocation cannot be undone; create a new Model',
        fieldPath: '.revoked',
      },
      {
        rule: '!has(self.sizeBytes) || !has(self.quarantine) || !has(self.quarantine.maxSizeBytes) || self.sizeBytes <= self.quarantine.maxSizeBytes',
        message: 'sizeBytes exceeds quarantine.maxSizeBytes',
        fieldPath: '.sizeBytes',
      },
    ],
  },
);

export const modelStatus = object('ModelStatus', 'The fleet-wide state of the artifact (per-node detail is on SecAINode).', {
  observedGeneration: optional(observedGeneration()),
  phase: optional(enumeration('Summary: Pending, Distributing, Trusted, Rejected or Revoked.', MODEL_PHASES)),
  nodes: optional(
    object('ModelNodeCounts', 'How many nodes are in each state for this artifact.', {
      desired: required(count('Nodes that must hold the artifact.')),
      trusted: required(count('Nodes whose own quarantine promoted it.')),
      pending: required(count('Nodes still fetching or scanning it.')),
      rejected: required(count('Nodes whose quarantine rejected it.')),
      contained: required(count('Nodes that confirmed containment after revocation or removal.')),
    }),
  ),
  rejection: optional(
    object('ModelRejection', 'The verdict of the first failing quarantine stage, as reported by a node.', {
      node: required(string('The node that reported it.', { maxLength: 253 })),
      stage: required(string('The first failing stage.', { maxLength: 64 })),
      reason: required(string('The stable reason code.', { maxLength: 128 })),
      message: optional(string('A human-readable explanation.', { maxLength: 1024 })),
    }),
  ),
  conditions: optional(conditions()),
});

export const modelResource: ResourceDefinition = {
  kind: 'Model',
  plural: 'models',
  singular: 'model',
  shortNames: ['secmodel'],
  description: 'An AI model artifact the fleet may run, pinned by digest; each node quarantines it before use.',
  spec: modelSpec,
  status: modelStatus,
  printerColumns: [
    { name: 'Phase', type: 'string', jsonPath: '.status.phase', description: 'Fleet-wide state.' },
    { name: 'Trusted', type: 'integer', jsonPath: '.status.nodes.trusted', description: 'Nodes that trust the artifact.' },
    { name: 'Desired', type: 'integer', jsonPath: '.status.nodes.desired', description: 'Nodes that must hold it.' },
    { name: 'Rejected', type: 'integer', jsonPath: '.status.nodes.rejected', description: 'Nodes that rejected it.' },
    { name: 'Revoked', type: 'boolean', jsonPath: '.spec.revoked', description: 'Whether it is revoked.' },
    conditionColumn('Ready'),
    { name: 'SHA256', type: 'string', jsonPath: '.spec.sha256', description: 'The pinned digest.', priority: 1 },
    { name: 'Reason', type: 'string', jsonPath: '.status.rejection.reason', description: 'Why a node rejected it.', priority: 1 },
  ],
};

export const MODEL_NODE_STATES = ['Pending', 'Fetching', 'Scanning', 'Trusted', 'Rejected', 'Contained'] as const;

export const modelNodeState = array(
  'The state of every artifact in the node plan.',
  object('NodeModelStatus', 'One artifact on this node.', {
    name: required(string('The Model name.', { maxLength: 253 })),
    sha256: required(sha256('The pinned digest.')),
    state: required(enumeration('Where the artifact is in quarantine on this node.', MODEL_NODE_STATES)),
    stage: optional(string('The current or first failing quarantine stage.', { maxLength: 64 })),
    reason: optional(string('The stable reason code of the verdict.', { maxLength: 128 })),
    message: optional(string('A human-readable explanation.', { maxLength: 1024 })),
  }),
  { maxItems: 256, listType: 'map', listMapKeys: ['name'] },
);
