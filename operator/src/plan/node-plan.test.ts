// computeNodePlan, table by table: selectors, egress merging, vault conflicts, model placement,
// revocation and removal, services and their preconditions, cordoning, digests and generations.
import { createHash } from 'node:crypto';
import type {
  EgressPolicySpec,
  InferenceService,
  InferenceServiceSpec,
  Model,
  ModelSpec,
  VaultPolicy,
  VaultPolicySpec,
} from '../../../api/gen/crd-types.js';
import { EgressMode, NodePlan, Protocol, Tpm2Mode, Via } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { planDigest } from '../../../api/proto/protocol.js';
import { allowlistDigest, type EgressPolicyVersion } from './egress.js';
import { computeNodePlan, ServiceExclusion, type NodePlanInputs, type PlanNodeInput } from './node-plan.js';
import type { ReferenceResolver } from './references.js';
import { assignServices } from './services.js';

const sha = (c: string) => c.repeat(64);
const TOKEN = 's3cret-token-value';
const TOKEN_SHA = createHash('sha256').update(TOKEN).digest('hex');
const PULL_CREDENTIAL = { username: 'robot', password: 'pull-password-value', identityToken: '', revision: 'uid-1/41' };

const resolver: ReferenceResolver = {
  configMapKey(ref) {
    if (ref.namespace === 'secai-system' && ref.name === 'sigs' && ref.key === 'bundle.json') return { ok: true, value: Buffer.from('{"bundle":1}') };
    if (ref.namespace === 'secai-system' && ref.name === 'sigs' && ref.key === 'root.json') return { ok: true, value: Buffer.from('{"root":1}') };
    if (ref.namespace === 'secai-system' && ref.name === 'sigs' && ref.key === 'ca-chain.pem') return { ok: true, value: Buffer.from('-----BEGIN CERTIFICATE-----') };
    return { ok: false, reason: 'ConfigMapNotFound', message: `ConfigMap ${ref.namespace}/${ref.name} key ${ref.key} not found` };
  },
  secretKeySha256(ref) {
    if (ref.name === 'token') return { ok: true, value: TOKEN_SHA };
    return { ok: false, reason: 'SecretNotFound', message: `Secret ${ref.namespace}/${ref.name} not found` };
  },
  registryCredential(name, registry) {
    if (name === 'pull' && registry === 'registry.example:5000') return { ok: true, value: { ...PULL_CREDENTIAL } };
    return { ok: false, reason: 'PullSecretNoEntry', message: `the pull Secret secai-system/${name} has no auths entry for ${registry}` };
  },
};

const node = (over: Partial<PlanNodeInput> = {}): PlanNodeInput => ({
  name: 'node-a',
  labels: { 'secai.io/node': 'true', pool: 'inference', zone: 'a' },
  cordoned: false,
  trustedDigests: new Set(),
  ...over,
});

const egress = (name: string, spec: EgressPolicySpec): EgressPolicyVersion => ({ name, spec });
const vault = (name: string, spec: Partial<VaultPolicySpec> = {}): VaultPolicy => ({
  apiVersion: 'secai.io/v1alpha1',
  kind: 'VaultPolicy',
  metadata: { name },
  spec: { luks: {}, ...spec },
});
const model = (name: string, spec: Partial<ModelSpec> = {}, deleting = false): Model => ({
  apiVersion: 'secai.io/v1alpha1',
  kind: 'Model',
  metadata: { name, ...(deleting ? { deletionTimestamp: new Date() } : {}) },
  spec: { source: { url: `https://models.example/${name}.gguf` }, format: 'gguf', sha256: sha('a'), ...spec },
});
const service = (name: string, spec: Partial<InferenceServiceSpec> = {}): InferenceService => ({
  apiVersion: 'secai.io/v1alpha1',
  kind: 'InferenceService',
  metadata: { name },
  spec: { modelRef: { name: 'm1' }, listen: { authTokenSecretRef: { namespace: 'secai-system', name: 'token', key: 'token' } }, ...spec },
});

function plan(over: Partial<NodePlanInputs> = {}) {
  const inputs: NodePlanInputs = {
    node: node(),
    egressPolicies: [],
    vaultPolicies: [],
    models: [],
    services: [],
    serviceAssignments: new Map(),
    resolver,
    ...over,
  };
  if (!over.serviceAssignments) {
    inputs.serviceAssignments = assignServices(inputs.services, [{ name: inputs.node.name, labels: inputs.node.labels, cordoned: inputs.node.cordoned }]);
  }
  return computeNodePlan(inputs);
}

describe('egress', () => {
  it('is a default deny in Enforce mode when no policy selects the node', () => {
    const { plan: p } = plan({ egressPolicies: [egress('other-pool', { nodeSelector: { matchLabels: { pool: 'research' } }, allow: [{ ip: '192.0.2.1' }] })] });
    expect(p.egress).toEqual({ mode: EgressMode.EGRESS_MODE_ENFORCE, allow: [], dns: { resolvers: [], queriesPerMinute: 0 }, torTransPort: 0, torDnsPort: 0, torNetwork: undefined, policies: [] });
  });

  it('unions the allowlists of every matching policy, normalised, deduplicated and tagged by policy', () => {
    const { plan: p } = plan({
      egressPolicies: [
        egress('b-mirror', {
          allow: [
            { host: 'Models.Mirror.Example.', ports: [{ port: 443 }, { port: 443 }] },
            { host: 'models.mirror.example', ports: [{ port: 443 }] },
          ],
        }),
        egress('a-ntp', {
          nodeSelector: { matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }] },
          allow: [{ cidr: '192.0.2.0/28', ports: [{ port: 9010, endPort: 9000 }, { port: 123 }], protocol: 'UDP' }],
        }),
        egress('c-elsewhere', { nodeSelector: { matchLabels: { zone: 'b' } }, allow: [{ ip: '198.51.100.7' }] }),
      ],
    });
    expect(p.egress?.policies).toEqual(['a-ntp', 'b-mirror']);
    expect(p.egress?.allow).toEqual([
      { destination: { $case: 'cidr', value: '192.0.2.0/28' }, ports: [{ port: 123, endPort: 0 }, { port: 9010, endPort: 0 }], protocol: Protocol.PROTOCOL_UDP, via: Via.VIA_DIRECT, policy: 'a-ntp' },
      { destination: { $case: 'host', value: 'models.mirror.example' }, ports: [{ port: 443, endPort: 0 }], protocol: Protocol.PROTOCOL_TCP, via: Via.VIA_DIRECT, policy: 'b-mirror' },
    ]);
  });

  it.each<[string, ('Enforce' | 'Audit' | undefined)[], EgressMode]>([
    ['one Enforce policy', ['Enforce'], EgressMode.EGRESS_MODE_ENFORCE],
    ['the default mode is Enforce', [undefined], EgressMode.EGRESS_MODE_ENFORCE],
    ['every matching policy in Audit', ['Audit', 'Audit'], EgressMode.EGRESS_MODE_AUDIT],
    ['Audit and Enforce together enforce (fail closed)', ['Audit', 'Enforce'], EgressMode.EGRESS_MODE_ENFORCE],
  ])('mode: %s', (_, modes, expected) => {
    const { plan: p } = plan({ egressPolicies: modes.map((mode, i) => egress(`p${i}`, mode ? { mode } : {})) });
    expect(p.egress?.mode).toBe(expected);
  });

  it('unions DNS resolvers with the strictest rate, and takes Tor from the first policy by name', () => {
    const { plan: p } = plan({
      egressPolicies: [
        egress('z', { dns: { resolvers: ['192.0.2.54', '192.0.2.53'], queriesPerMinute: 300 }, tor: { transPort: 9050 }, allow: [{ host: 'a.example.org', via: 'Tor', protocol: 'TCP' }] }),
        egress('m', { dns: { resolvers: ['192.0.2.53'] }, tor: { transPort: 9040 } }),
        egress('a', {}),
      ],
    });
    expect(p.egress?.dns).toEqual({ resolvers: ['192.0.2.53', '192.0.2.54'], queriesPerMinute: 300 });
    expect(p.egress?.torTransPort).toBe(9040);
    expect(p.egress?.allow[0]?.via).toBe(Via.VIA_TOR);
  });

  it('uses the policy version released to the node (a rollout keeps unreleased nodes on the previous one)', () => {
    const previous = egress('p', { allow: [{ ip: '192.0.2.1' }] });
    const next = egress('p', { allow: [{ ip: '192.0.2.2' }] });
    const before = plan({ egressPolicies: [previous] }).plan;
    const after = plan({ egressPolicies: [next] }).plan;
    expect(before.egress?.allow[0]?.destination).toEqual({ $case: 'ip', value: '192.0.2.1' });
    expect(after.egress?.allow[0]?.destination).toEqual({ $case: 'ip', value: '192.0.2.2' });
    expect(before.digest).not.toBe(after.digest);
  });

  it('digests an allowlist independently of entry order and duplicates', () => {
    const a = allowlistDigest(egress('p', { allow: [{ ip: '192.0.2.1' }, { host: 'x.example.org' }] }));
    const b = allowlistDigest(egress('p', { allow: [{ host: 'X.example.org.' }, { ip: '192.0.2.1' }, { ip: '192.0.2.1' }] }));
    expect(a).toBe(b);
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(allowlistDigest(egress('p', { allow: [{ ip: '192.0.2.9' }] }))).not.toBe(a);
  });
});

describe('vault', () => {
  it.each<[string, VaultPolicy[], string | undefined, string[]]>([
    ['none selects the node', [vault('elsewhere', { nodeSelector: { matchLabels: { pool: 'research' } } })], undefined, []],
    ['the only match applies', [vault('fleet')], 'fleet', []],
    ['the highest priority wins', [vault('low', { priority: 1 }), vault('high', { priority: 10 }), vault('default')], 'high', ['default', 'low']],
    ['a tie goes to the first name', [vault('zeta', { priority: 5 }), vault('alpha', { priority: 5 })], 'alpha', ['zeta']],
    [
      'a non-matching higher priority does not shadow',
      [vault('research', { priority: 100, nodeSelector: { matchLabels: { pool: 'research' } } }), vault('fleet')],
      'fleet',
      [],
    ],
  ])('%s', (_, policies, applied, shadowed) => {
    const result = plan({ vaultPolicies: policies });
    expect(result.plan.vault?.policy).toBe(applied);
    expect(result.shadowedVaultPolicies).toEqual(shadowed);
  });

  it('fills the CRD defaults and sorts PCRs', () => {
    const { plan: p } = plan({
      vaultPolicies: [vault('v', { tpm2: { mode: 'Required', pcrs: [7, 0, 4, 7] }, attestation: { expectedPcrs: [{ index: 7, value: sha('B') }, { index: 0, value: sha('c') }] } })],
    });
    expect(p.vault).toEqual({
      policy: 'v',
      luksType: 'luks2',
      cipher: 'aes-xts-plain64',
      minKeySizeBits: 512,
      pbkdf: 'argon2id',
      minPbkdfMemoryKib: 65536,
      tpm2Mode: Tpm2Mode.TPM2_MODE_REQUIRED,
      pcrBank: 'sha256',
      pcrs: [0, 4, 7],
      autoLockIdleMinutes: 30,
      relockOnIncident: true,
      lockEpoch: 0,
      requireSecureBoot: false,
      expectedPcrs: [{ index: 0, value: sha('c') }, { index: 7, value: sha('b') }],
    });
  });
});

describe('models', () => {
  const names = (p: NodePlan) => p.models.map((m) => m.name);

  it.each<[string, Model[], InferenceService[], string[]]>([
    ['no placement and no service: not held', [model('m1')], [], []],
    ['placement selecting the node', [model('m1', { placement: { nodeSelector: { matchLabels: { pool: 'inference' } } } })], [], ['m1']],
    ['placement with an empty selector selects every node', [model('m1', { placement: {} })], [], ['m1']],
    ['placement selecting other nodes', [model('m1', { placement: { nodeSelector: { matchLabels: { pool: 'research' } } } })], [], []],
    ['a service on this node uses it', [model('m1')], [service('s1')], ['m1']],
    ['a service placed elsewhere does not pull it', [model('m1')], [service('s1', { placement: { nodeSelector: { matchLabels: { zone: 'b' } } } })], []],
    ['revoked: never held', [model('m1', { placement: {}, revoked: true, revokedReason: 'backdoor' })], [service('s1')], []],
    ['being deleted: dropped', [model('m1', { placement: {} }, true)], [], []],
    ['sorted by name', [model('m2', { placement: {} }), model('m1', { placement: {} })], [], ['m1', 'm2']],
  ])('%s', (_, models, services, expected) => {
    expect(names(plan({ models, services }).plan)).toEqual(expected);
  });

  it('lists every revoked digest fleet-wide, whatever the placement, until the Model is deleted', () => {
    const { plan: p } = plan({
      models: [
        model('bad', { sha256: sha('d'), placement: { nodeSelector: { matchLabels: { pool: 'research' } } }, revoked: true, revokedReason: 'backdoor' }),
        model('gone', { sha256: sha('e'), revoked: true, revokedReason: 'old' }, true),
        model('fine', { placement: {} }),
      ],
    });
    expect(p.revoked).toEqual([{ name: 'bad', sha256: sha('d'), reason: 'backdoor' }]);
  });

  it('resolves signature material from ConfigMaps into bytes', () => {
    const { plan: p } = plan({
      models: [
        model('m1', {
          placement: {},
          signature: {
            bundle: { configMapKeyRef: { namespace: 'secai-system', name: 'sigs', key: 'bundle.json' } },
            keyless: { issuer: 'https://issuer.example', subjectPattern: '^ci$', trustedRootConfigMapKeyRef: { namespace: 'secai-system', name: 'sigs', key: 'root.json' } },
          },
          quarantine: { maxSizeBytes: 1000, smokeTest: { enabled: true } },
          sizeBytes: 900,
        }),
      ],
    });
    expect(p.models[0]).toMatchObject({
      sha256: sha('a'),
      sizeBytes: 900,
      signature: { bundleJson: Buffer.from('{"bundle":1}'), bundleUrl: '', publicKeyPem: '', keyless: { issuer: 'https://issuer.example', subjectPattern: '^ci$', trustedRootJson: Buffer.from('{"root":1}') } },
      quarantine: { maxSizeBytes: 1000, smokeTest: true, smokeTestMaxScore: 0.3 },
    });
  });

  it('passes an OCI source by manifest digest, and no URL', () => {
    const oci = { registry: 'registry.example:5000', repository: 'models/m', digest: `sha256:${sha('c')}`, tag: 'v1' };
    const { plan: p } = plan({ models: [model('m1', { placement: {}, source: { oci, allowInsecureHTTP: true } })] });
    expect(p.models[0]).toMatchObject({ url: '', allowInsecureHttp: true, oci: { registry: 'registry.example:5000', repository: 'models/m', digest: `sha256:${sha('c')}` } });
  });

  describe('an OCI pull Secret', () => {
    const oci = (pullSecret: string) => ({ registry: 'registry.example:5000', repository: 'models/m', digest: `sha256:${sha('c')}`, pullSecretRef: { name: pullSecret } });

    it('puts the credential for the registry into the plan of the node that pulls', () => {
      const { plan: p } = plan({ models: [model('m1', { placement: {}, source: { oci: oci('pull') } })] });
      expect(p.models[0]?.oci).toEqual({ registry: 'registry.example:5000', repository: 'models/m', digest: `sha256:${sha('c')}`, credential: PULL_CREDENTIAL });
    });

    it('leaves the model out when the Secret has no credential for it, with the resolver\'s reason', () => {
      const result = plan({ models: [model('m1', { placement: {}, source: { oci: oci('other') } })] });
      expect(result.plan.models).toEqual([]);
      expect(result.unresolvedModels).toEqual([{ name: 'm1', reason: 'PullSecretNoEntry', message: expect.stringContaining('registry.example:5000') }]);
    });

    it('keeps the password out of the published digest: only the revision moves it', () => {
      const { plan: p } = plan({ models: [model('m1', { placement: {}, source: { oci: oci('pull') } })] });
      const withCredential = (credential: typeof PULL_CREDENTIAL) => ({ ...p, models: p.models.map((m) => ({ ...m, oci: { ...m.oci!, credential } })) });
      expect(planDigest(withCredential({ ...PULL_CREDENTIAL, password: 'another-guess' }))).toBe(p.digest);
      expect(planDigest(withCredential({ ...PULL_CREDENTIAL, username: 'someone', identityToken: 'tok' }))).toBe(p.digest);
      expect(planDigest(withCredential({ ...PULL_CREDENTIAL, revision: 'uid-1/42' }))).not.toBe(p.digest);
      expect(p.digest).toBe(planDigest(p));
    });
  });

  it('passes an OpenSSF model signature with its file and resolved certificate chain', () => {
    const { plan: p } = plan({
      models: [
        model('m1', {
          placement: {},
          signature: { bundle: { inline: '{"oms":1}' }, modelSigning: { file: 'weights/m.gguf', certificateChainConfigMapKeyRef: { namespace: 'secai-system', name: 'sigs', key: 'ca-chain.pem' } } },
        }),
        model('m2', { placement: {}, signature: { bundle: { inline: '{"oms":2}' }, publicKey: { pem: '-----BEGIN PUBLIC KEY-----' }, modelSigning: {} } }),
      ],
    });
    expect(p.models.map((m) => m.signature)).toEqual([
      { bundleJson: Buffer.from('{"oms":1}'), bundleUrl: '', publicKeyPem: '', keyless: undefined, modelSigning: { file: 'weights/m.gguf', certificateChainPem: Buffer.from('-----BEGIN CERTIFICATE-----') } },
      { bundleJson: Buffer.from('{"oms":2}'), bundleUrl: '', publicKeyPem: '-----BEGIN PUBLIC KEY-----', keyless: undefined, modelSigning: { file: '', certificateChainPem: Buffer.alloc(0) } },
    ]);
  });

  it('leaves out a model whose signature material is missing, and says why (fail closed)', () => {
    const result = plan({
      models: [model('m1', { placement: {}, signature: { bundle: { configMapKeyRef: { namespace: 'secai-system', name: 'nope', key: 'b' } }, publicKey: { pem: '-----BEGIN PUBLIC KEY-----' } } })],
      services: [service('s1')],
      node: node({ trustedDigests: new Set([sha('a')]) }),
    });
    expect(result.plan.models).toEqual([]);
    expect(result.unresolvedModels).toEqual([{ name: 'm1', reason: 'ConfigMapNotFound', message: expect.stringContaining('nope') }]);
    expect(result.excludedServices.map((e) => e.reason)).toEqual([ServiceExclusion.ModelUnresolved]);
  });
});

describe('services', () => {
  const trusted = node({ trustedDigests: new Set([sha('a')]) });

  it('serves a model the node trusts, with the token digest and never the token', () => {
    const { plan: p, excludedServices } = plan({ node: trusted, models: [model('m1')], services: [service('s1', { resources: { contextSize: 4096 } })] });
    expect(excludedServices).toEqual([]);
    expect(p.services).toEqual([
      { name: 's1', model: 'm1', modelSha256: sha('a'), gpuLayers: 0, contextSize: 4096, threads: 1, parallelRequests: 1, queueDepth: 16, port: 8000, authTokenSha256: TOKEN_SHA },
    ]);
    expect(JSON.stringify(NodePlan.toJSON(p))).not.toContain(TOKEN);
  });

  it.each<[string, Partial<NodePlanInputs>, string]>([
    ['the node does not trust the model yet', { node: node() }, ServiceExclusion.ModelNotTrusted],
    ['the model does not exist', { node: trusted, models: [] }, ServiceExclusion.ModelNotFound],
    ['the model is revoked', { node: trusted, models: [model('m1', { revoked: true, revokedReason: 'x' })] }, ServiceExclusion.ModelRevoked],
    ['the model is being deleted', { node: trusted, models: [model('m1', {}, true)] }, ServiceExclusion.ModelDeleting],
    [
      'the token Secret is missing',
      { node: trusted, services: [service('s1', { listen: { authTokenSecretRef: { namespace: 'secai-system', name: 'missing', key: 't' } } })] },
      ServiceExclusion.AuthTokenUnresolved,
    ],
  ])('is left out when %s', (_, over, reason) => {
    const result = plan({ models: [model('m1')], services: [service('s1')], ...over });
    expect(result.plan.services).toEqual([]);
    expect(result.excludedServices.map((e) => e.reason)).toEqual([reason]);
  });

  it('gives a contested port to the first service by name', () => {
    const result = plan({ node: trusted, models: [model('m1')], services: [service('b'), service('a'), service('c', { listen: { port: 9000, authTokenSecretRef: { namespace: 'secai-system', name: 'token', key: 'token' } } })] });
    expect(result.plan.services.map((s) => `${s.name}:${s.port}`)).toEqual(['a:8000', 'c:9000']);
    expect(result.excludedServices).toEqual([{ name: 'b', reason: ServiceExclusion.PortConflict, message: expect.stringContaining('InferenceService a') }]);
  });

  it('places a service on at most maxNodes selected nodes, by name, skipping cordoned nodes', () => {
    const nodes = ['n3', 'n1', 'n4', 'n2'].map((name) => ({ name, labels: { pool: name === 'n4' ? 'other' : 'inference' }, cordoned: name === 'n1' }));
    const assignments = assignServices([service('s1', { placement: { nodeSelector: { matchLabels: { pool: 'inference' } }, maxNodes: 2 } }), service('all')], nodes);
    expect(assignments.get('s1')).toEqual(['n2', 'n3']);
    expect(assignments.get('all')).toEqual(['n2', 'n3', 'n4']);
  });
});

describe('cordoning', () => {
  it('keeps models and enforcement but serves nothing', () => {
    const cordoned = node({ cordoned: true, trustedDigests: new Set([sha('a')]) });
    const result = plan({
      node: cordoned,
      models: [model('m1', { placement: {} })],
      services: [service('s1')],
      serviceAssignments: new Map([['s1', ['node-a']]]),
      egressPolicies: [egress('p', { allow: [{ ip: '192.0.2.1' }] })],
    });
    expect(result.plan.cordoned).toBe(true);
    expect(result.plan.services).toEqual([]);
    expect(result.plan.models.map((m) => m.name)).toEqual(['m1']);
    expect(result.plan.egress?.allow).toHaveLength(1);
    expect(result.excludedServices.map((e) => e.reason)).toEqual([ServiceExclusion.NodeCordoned]);
  });
});

describe('digest and generation', () => {
  const inputs = (): Partial<NodePlanInputs> => ({
    node: node({ trustedDigests: new Set([sha('a')]) }),
    models: [model('m2', { placement: {} }), model('m1'), model('r', { revoked: true, revokedReason: 'x', sha256: sha('f') })],
    services: [service('s1')],
    egressPolicies: [egress('b', { allow: [{ ip: '192.0.2.2' }] }), egress('a', { allow: [{ ip: '192.0.2.1' }] })],
    vaultPolicies: [vault('v2'), vault('v1')],
  });

  it('is the protocol digest of the plan, the same whatever the order of the inputs', () => {
    const first = plan(inputs()).plan;
    const shuffled = inputs();
    shuffled.models = [...(shuffled.models ?? [])].reverse();
    shuffled.egressPolicies = [...(shuffled.egressPolicies ?? [])].reverse();
    shuffled.vaultPolicies = [...(shuffled.vaultPolicies ?? [])].reverse();
    const second = plan(shuffled).plan;
    expect(second.digest).toBe(first.digest);
    expect(first.digest).toBe(planDigest(first));
    expect(first.generation).toBe(0);
  });

  it.each<[string, (i: Partial<NodePlanInputs>) => void]>([
    ['a label change moves the node out of a policy', (i) => (i.egressPolicies = [egress('a', { nodeSelector: { matchLabels: { zone: 'b' } } })])],
    ['a revocation', (i) => (i.models = [...(i.models ?? []), model('r2', { revoked: true, revokedReason: 'x', sha256: sha('9') })])],
    ['removal of a model', (i) => (i.models = (i.models ?? []).filter((m) => m.metadata.name !== 'm2'))],
    ['cordoning', (i) => (i.node = node({ cordoned: true, trustedDigests: new Set([sha('a')]) }))],
    ['a newly trusted model starts a service', (i) => (i.node = node())],
  ])('changes with %s', (_, change) => {
    const base = plan(inputs()).plan.digest;
    const changed = inputs();
    change(changed);
    expect(plan(changed).plan.digest).not.toBe(base);
  });

});
