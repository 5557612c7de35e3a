// A model pulled from an OCI registry (the OCI distribution API), by manifest digest only: the
// manifest is fetched with a size bound and must hash to its digest; its layout must be one the
// node reads — CNCF ModelPack (artifactType application/vnd.cncf.model.manifest.v1+json, a raw
// weight layer application/vnd.cncf.model.weight.v1.raw whose org.cncf.model.filepath names a .gguf)
// or Docker's model format (config application/vnd.docker.ai.model.config.v0.1+json, layer
// application/vnd.docker.ai.gguf.v3) — with exactly one GGUF layer, whose digest must be the
// Model's pin; the blob is hashed while it streams into staging and refused when it differs. Every
// request goes through fetch.ts (the egress policy's destinations, redirects, time and size limits).
// No Node OCI client covers this: the registry clients on npm either pull whole images into a
// store or wrap a CLI; two GETs with these checks are what the node needs.
import { readFile, unlink } from 'node:fs/promises';
import { fetchToStaging, type FetchedFile, type FetchOptions } from './fetch.js';
import { ArchiveRefusal, IMAGE_CONFIG_TYPES, MODELCAR_LAYER_TYPES, unpackModelcarLayer } from './modelcar.js';
import { verifyOciCosignSignature } from './oci-signature.js';
import { RegistryAuthorizer, type RegistryCredential } from './registry-auth.js';
import { failed, passed, Reason, Stage, type ReasonCode, type StageResult } from './verdict.js';

export interface OciModelSource {
  /** host[:port] */
  registry: string;
  repository: string;
  /** sha256:<64 hex> of the manifest. */
  digest: string;
  /** http instead of https (labs and tests only). */
  plainHttp: boolean;
  /** Set when the Model requires a cosign signature of the manifest (oci-signature.ts), checked before the blob is pulled. */
  cosignPublicKeyPem?: string;
  /** From the Model's pull Secret (or `--registry-config`): answers the registry's challenges (registry-auth.ts). */
  credential?: RegistryCredential;
}

export const OCI_LIMITS = {
  /** distribution refuses manifests above 4 MiB; a model manifest is a few KiB. */
  manifestBytes: 1024 * 1024,
  layers: 64,
} as const;

export const MODELPACK_ARTIFACT_TYPE = 'application/vnd.cncf.model.manifest.v1+json';
export const MODELPACK_CONFIG_TYPE = 'application/vnd.cncf.model.config.v1+json';
export const MODELPACK_RAW_WEIGHT = 'application/vnd.cncf.model.weight.v1.raw';
export const MODELPACK_FILEPATH = 'org.cncf.model.filepath';
export const DOCKER_MODEL_CONFIG_TYPE = 'application/vnd.docker.ai.model.config.v0.1+json';
export const DOCKER_MODEL_GGUF = 'application/vnd.docker.ai.gguf.v3';
const MANIFEST_TYPES = ['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json'];

const REPOSITORY = /^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$/;
const REGISTRY = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[0-9]{1,5})?$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** `oci://registry/repository@sha256:...` as the command line takes it. */
export function parseOciReference(ref: string, plainHttp: boolean): OciModelSource | undefined {
  const m = /^oci:\/\/([^/]+)\/(.+)@(sha256:[0-9a-f]{64})$/.exec(ref);
  if (!m || !REGISTRY.test(m[1]!) || !REPOSITORY.test(m[2]!) || m[2]!.length > 255) return undefined;
  return { registry: m[1]!, repository: m[2]!, digest: m[3]!, plainHttp };
}

export interface GgufLayer {
  digest: string;
  size: number;
  layout: 'modelpack' | 'docker-model';
  path?: string;
}

/** A KServe modelcar image: its tar layers, read in order for the one models/*.gguf. */
export interface ModelcarLayers {
  layout: 'modelcar';
  layers: { digest: string; size: number; gzip: boolean }[];
}

type Refusal = { reason: ReasonCode; message: string };

interface Descriptor {
  mediaType?: unknown;
  digest?: unknown;
  size?: unknown;
  annotations?: Record<string, unknown>;
}

/** The GGUF layer of a manifest, or why there is none the node may pull; pure. */
export function selectGgufLayer(manifest: unknown, pinSha256: string, limits = OCI_LIMITS): GgufLayer | ModelcarLayers | Refusal {
  const m = manifest as { schemaVersion?: unknown; mediaType?: unknown; artifactType?: unknown; config?: Descriptor; layers?: unknown };
  if (typeof m !== 'object' || m === null || m.schemaVersion !== 2 || !Array.isArray(m.layers) || typeof m.config !== 'object' || m.config === null) {
    return { reason: Reason.OciManifestInvalid, message: 'not an OCI image manifest (schemaVersion 2 with a config and layers)' };
  }
  if (m.mediaType !== undefined && !MANIFEST_TYPES.includes(String(m.mediaType))) return { reason: Reason.LayoutUnsupported, message: `manifest media type ${String(m.mediaType).slice(0, 100)} (an index or a foreign type) is not pulled` };
  if (m.layers.length > limits.layers) return { reason: Reason.TooManyLayers, message: `${m.layers.length} layers, more than the limit of ${limits.layers}` };
  const layers = m.layers as Descriptor[];
  const modelpack = m.artifactType === MODELPACK_ARTIFACT_TYPE || m.config.mediaType === MODELPACK_CONFIG_TYPE;
  const docker = m.config.mediaType === DOCKER_MODEL_CONFIG_TYPE;
  let candidates: Descriptor[];
  if (modelpack) candidates = layers.filter((l) => l.mediaType === MODELPACK_RAW_WEIGHT && String(l.annotations?.[MODELPACK_FILEPATH] ?? '').endsWith('.gguf'));
  else if (docker) candidates = layers.filter((l) => l.mediaType === DOCKER_MODEL_GGUF);
  else if (IMAGE_CONFIG_TYPES.includes(String(m.config.mediaType))) {
    const tars = layers.filter((l) => MODELCAR_LAYER_TYPES.includes(String(l.mediaType)));
    if (tars.length === 0) return { reason: Reason.LayoutUnsupported, message: 'an image without tar layers' };
    if (tars.some((l) => typeof l.digest !== 'string' || !DIGEST.test(l.digest) || typeof l.size !== 'number' || !Number.isSafeInteger(l.size) || l.size < 0)) {
      return { reason: Reason.OciManifestInvalid, message: 'every image layer needs a sha256 digest and a size' };
    }
    return { layout: 'modelcar', layers: tars.map((l) => ({ digest: l.digest as string, size: l.size as number, gzip: String(l.mediaType).endsWith('gzip') })) };
  } else return { reason: Reason.LayoutUnsupported, message: 'neither a CNCF ModelPack, a Docker model artifact nor a modelcar image' };
  if (candidates.length !== 1) return { reason: Reason.LayoutUnsupported, message: `${candidates.length} GGUF layers of a raw media type; the node pulls exactly one` };
  const layer = candidates[0]!;
  if (typeof layer.digest !== 'string' || !DIGEST.test(layer.digest) || typeof layer.size !== 'number' || !Number.isSafeInteger(layer.size) || layer.size < 0) {
    return { reason: Reason.OciManifestInvalid, message: 'the GGUF layer needs a sha256 digest and a size' };
  }
  if (layer.digest !== `sha256:${pinSha256}`) return { reason: Reason.LayerNotPinned, message: `the GGUF layer is ${layer.digest.slice(0, 23)}..., not the pinned SHA-256` };
  const path = modelpack ? String(layer.annotations?.[MODELPACK_FILEPATH]) : undefined;
  return { digest: layer.digest, size: layer.size, layout: modelpack ? 'modelpack' : 'docker-model', ...(path ? { path } : {}) };
}

function fail(reason: ReasonCode, message: string): { stage: StageResult } {
  return { stage: failed(Stage.Fetch, reason, message) };
}

/**
 * Told of the GGUF layer's staging file as it is written (a raw layer, not a modelcar's): its path
 * and final size once it exists, then how many leading bytes are written.
 */
export interface BlobFollower {
  onBlob(path: string, sizeBytes: number): void;
  onProgress(writtenBytes: number): void;
}

/** Pulls the GGUF of `source` into `stagingDir`; the Fetch stage says how it went. */
export async function pullOciModel(source: OciModelSource, pinSha256: string, stagingDir: string, options: FetchOptions, limits = OCI_LIMITS, follower?: BlobFollower): Promise<{ stage: StageResult; file?: FetchedFile }> {
  if (!REGISTRY.test(source.registry) || !REPOSITORY.test(source.repository) || !DIGEST.test(source.digest)) return fail(Reason.SourceInvalid, 'an OCI source needs a registry host, a repository and a sha256 manifest digest');
  const origin = `${source.plainHttp ? 'http' : 'https'}://${source.registry}`;
  const base = `${origin}/v2/${source.repository}`;
  const fetchOptions: FetchOptions = { ...options, allowInsecureHttp: source.plainHttp };
  // One authorizer for every request of the pull: a token the manifest earned serves the blobs.
  fetchOptions.authorizer = new RegistryAuthorizer(new URL(origin), source.credential, fetchOptions);
  const got = await fetchToStaging(`${base}/manifests/${source.digest}`, stagingDir, { ...fetchOptions, maxBytes: limits.manifestBytes, accept: MANIFEST_TYPES.join(', '), expectSha256: source.digest.slice(7) });
  if (!got.file) {
    if (got.stage.reason === Reason.TooLarge) return fail(Reason.ManifestTooLarge, `the manifest: ${got.stage.message}`);
    if (got.stage.reason === Reason.BlobDigestMismatch) return fail(Reason.ManifestDigestMismatch, `the manifest does not hash to ${source.digest.slice(0, 23)}...`);
    return { stage: { ...got.stage, message: `the manifest: ${got.stage.message}` } };
  }
  let manifest: unknown;
  try {
    manifest = JSON.parse(await readFile(got.file.path, 'utf8'));
  } catch {
    return fail(Reason.OciManifestInvalid, 'the manifest is not JSON');
  } finally {
    await unlink(got.file.path).catch(() => undefined);
  }
  const layer = selectGgufLayer(manifest, pinSha256, limits);
  if ('reason' in layer) return fail(layer.reason, layer.message);
  if (source.cosignPublicKeyPem !== undefined) {
    const refusal = await verifyOciCosignSignature(base, source.digest, source.cosignPublicKeyPem, stagingDir, fetchOptions);
    if (refusal) return { stage: refusal };
  }
  if ('layers' in layer) return pullModelcar(base, layer, pinSha256, stagingDir, fetchOptions, source);
  if (layer.size > options.maxBytes) return fail(Reason.TooLarge, `the GGUF layer has ${layer.size} bytes, more than the limit of ${options.maxBytes}`);
  const followed = follower ? { onStaging: (path: string) => follower.onBlob(path, layer.size), onProgress: (n: number) => follower.onProgress(n) } : {};
  const blob = await fetchToStaging(`${base}/blobs/${layer.digest}`, stagingDir, { ...fetchOptions, maxBytes: layer.size, expectSha256: layer.digest.slice(7), ...followed });
  if (!blob.file) return { stage: { ...blob.stage, message: `the GGUF layer: ${blob.stage.message}` } };
  if (blob.file.sizeBytes !== layer.size) {
    await unlink(blob.file.path).catch(() => undefined);
    return fail(Reason.TransferFailed, `the GGUF layer has ${blob.file.sizeBytes} bytes, the manifest says ${layer.size}`);
  }
  return {
    stage: passed(Stage.Fetch, `pulled the ${layer.layout} GGUF layer (${layer.size} bytes) from ${source.registry}/${source.repository}${source.cosignPublicKeyPem !== undefined ? ', its manifest cosign-signed by the Model\'s key' : ''}`, { sizeBytes: layer.size, layout: layer.layout, registry: source.registry, ...(source.cosignPublicKeyPem !== undefined ? { cosignSigned: true } : {}) }),
    file: blob.file,
  };
}

/** Reads a modelcar image's tar layers in order; exactly one models/*.gguf among them, the Model's pin. */
async function pullModelcar(base: string, image: ModelcarLayers, pinSha256: string, stagingDir: string, options: FetchOptions, source: OciModelSource): Promise<{ stage: StageResult; file?: FetchedFile }> {
  const total = image.layers.reduce((n, l) => n + l.size, 0);
  const maxLayerBytes = options.maxBytes * 2 + 64 * 1024 * 1024;
  if (total > maxLayerBytes) return fail(Reason.TooLarge, `the image layers have ${total} bytes, more than the limit of ${maxLayerBytes}`);
  let kept: { file: FetchedFile; path: string } | undefined;
  const drop = async () => kept && (await unlink(kept.file.path).catch(() => undefined));
  for (const layer of image.layers) {
    let path: string | undefined;
    const got = await fetchToStaging(`${base}/blobs/${layer.digest}`, stagingDir, {
      ...options,
      maxBytes: layer.size,
      expectSha256: layer.digest.slice(7),
      unpack: async (body, out) => {
        const result = await unpackModelcarLayer(body, out, layer.gzip, pinSha256, options.maxBytes);
        if (result.path && kept) throw new ArchiveRefusal(Reason.LayoutUnsupported, `more than one GGUF under models/ (${kept.path.slice(0, 100)}, ${result.path.slice(0, 100)})`);
        path = result.path;
        return result.bytes;
      },
    });
    if (!got.file) {
      await drop();
      return { stage: { ...got.stage, message: `the image layer ${layer.digest.slice(0, 23)}...: ${got.stage.message}` } };
    }
    if (path === undefined) await unlink(got.file.path).catch(() => undefined);
    else kept = { file: got.file, path };
  }
  if (!kept) return fail(Reason.LayoutUnsupported, 'no .gguf under models/ in the image layers');
  return {
    stage: passed(Stage.Fetch, `pulled ${kept.path} (${kept.file.sizeBytes} bytes) from the modelcar image ${source.registry}/${source.repository}`, { sizeBytes: kept.file.sizeBytes, layout: 'modelcar', registry: source.registry, path: kept.path }),
    file: kept.file,
  };
}
