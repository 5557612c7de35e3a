// Model entries of a node plan: the pin, the source (with the registry credential of an OCI pull
// Secret) and the signature material the node verifies offline, with ConfigMap references resolved
// into bytes.
import type { Model } from '../../../api/gen/crd-types.js';
import type { ModelPlan, OciSource, QuarantineOverrides, Signature } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import type { ReferenceResolver, Resolution } from './references.js';

/** The CRD default and ceiling of quarantine.smokeTest.maxScore. */
const DEFAULT_SMOKE_TEST_MAX_SCORE = 0.3;

export function isDeleting(obj: { metadata: { deletionTimestamp?: unknown } }): boolean {
  return obj.metadata.deletionTimestamp !== undefined && obj.metadata.deletionTimestamp !== null;
}

function signatureOf(model: Model, resolver: ReferenceResolver): Resolution<Signature | undefined> {
  const sig = model.spec.signature;
  if (!sig) return { ok: true, value: undefined };
  let bundleJson: Buffer = Buffer.alloc(0);
  if (sig.bundle.inline !== undefined) bundleJson = Buffer.from(sig.bundle.inline, 'utf8');
  else if (sig.bundle.configMapKeyRef) {
    const found = resolver.configMapKey(sig.bundle.configMapKeyRef);
    if (!found.ok) return found;
    bundleJson = found.value;
  }
  let publicKeyPem = '';
  if (sig.publicKey?.pem !== undefined) publicKeyPem = sig.publicKey.pem;
  else if (sig.publicKey?.configMapKeyRef) {
    const found = resolver.configMapKey(sig.publicKey.configMapKeyRef);
    if (!found.ok) return found;
    publicKeyPem = found.value.toString('utf8');
  }
  let keyless: Signature['keyless'];
  if (sig.keyless) {
    const root = resolver.configMapKey(sig.keyless.trustedRootConfigMapKeyRef);
    if (!root.ok) return root;
    keyless = { issuer: sig.keyless.issuer, subjectPattern: sig.keyless.subjectPattern, trustedRootJson: root.value };
  }
  let modelSigning: Signature['modelSigning'];
  if (sig.modelSigning) {
    let certificateChainPem: Buffer = Buffer.alloc(0);
    if (sig.modelSigning.certificateChainConfigMapKeyRef) {
      const chain = resolver.configMapKey(sig.modelSigning.certificateChainConfigMapKeyRef);
      if (!chain.ok) return chain;
      certificateChainPem = chain.value;
    }
    modelSigning = { file: sig.modelSigning.file ?? '', certificateChainPem };
  }
  return { ok: true, value: { bundleJson, bundleUrl: sig.bundle.url ?? '', publicKeyPem, keyless, modelSigning, ...(sig.bundle.oci ? { ociCosign: true } : {}) } };
}

function quarantineOf(model: Model): QuarantineOverrides | undefined {
  const q = model.spec.quarantine;
  if (!q) return undefined;
  const smokeTest = q.smokeTest?.enabled ?? false;
  return {
    maxSizeBytes: q.maxSizeBytes ?? 0,
    smokeTest,
    smokeTestMaxScore: smokeTest ? (q.smokeTest?.maxScore ?? DEFAULT_SMOKE_TEST_MAX_SCORE) : 0,
  };
}

/** The plan entry of a model, or why it cannot be built (an unresolvable signature reference or pull Secret). */
export function modelPlanOf(model: Model, resolver: ReferenceResolver): Resolution<ModelPlan> {
  const signature = signatureOf(model, resolver);
  if (!signature.ok) return signature;
  const { source } = model.spec;
  let oci: OciSource | undefined;
  if (source.oci) {
    oci = { registry: source.oci.registry, repository: source.oci.repository, digest: source.oci.digest };
    if (source.oci.pullSecretRef) {
      const credential = resolver.registryCredential(source.oci.pullSecretRef.name, source.oci.registry);
      if (!credential.ok) return credential;
      oci.credential = credential.value;
    }
  }
  return {
    ok: true,
    value: {
      name: model.metadata.name ?? '',
      url: source.url ?? '',
      oci,
      revision: source.revision ?? '',
      format: model.spec.format,
      sha256: model.spec.sha256,
      sizeBytes: model.spec.sizeBytes ?? 0,
      allowInsecureHttp: source.allowInsecureHTTP ?? false,
      signature: signature.value,
      quarantine: quarantineOf(model),
    },
  };
}
