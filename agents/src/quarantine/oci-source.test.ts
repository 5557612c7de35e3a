import { DOCKER_MODEL_CONFIG_TYPE, DOCKER_MODEL_GGUF, MODELPACK_ARTIFACT_TYPE, MODELPACK_RAW_WEIGHT, parseOciReference, selectGgufLayer } from './oci-source.js';
import { Reason } from './verdict.js';

const pin = 'a'.repeat(64);
const gguf = (mediaType: string, annotations: Record<string, string> = {}, digest = `sha256:${pin}`) => ({ mediaType, digest, size: 100, annotations });
const modelpack = (layers: unknown[], extra = {}) => ({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', artifactType: MODELPACK_ARTIFACT_TYPE, config: { mediaType: 'application/vnd.cncf.model.config.v1+json' }, layers, ...extra });
const docker = (layers: unknown[]) => ({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: DOCKER_MODEL_CONFIG_TYPE }, layers });
const weight = gguf(MODELPACK_RAW_WEIGHT, { 'org.cncf.model.filepath': 'models/m.gguf' });

it.each([
  ['a ModelPack raw GGUF weight', modelpack([weight, gguf('application/vnd.cncf.model.doc.v1.raw')]), { layout: 'modelpack', path: 'models/m.gguf', size: 100 }],
  ['a Docker model GGUF layer', docker([gguf(DOCKER_MODEL_GGUF)]), { layout: 'docker-model', size: 100 }],
])('selects %s', (_name, manifest, expected) => {
  expect(selectGgufLayer(manifest, pin)).toEqual({ digest: `sha256:${pin}`, ...expected });
});

it.each([
  ['not a manifest', { schemaVersion: 1 }, Reason.OciManifestInvalid],
  ['an image index', { ...modelpack([weight]), mediaType: 'application/vnd.oci.image.index.v1+json' }, Reason.LayoutUnsupported],
  ['an ordinary image', { ...docker([weight]), config: { mediaType: 'application/vnd.oci.image.config.v1+json' } }, Reason.LayoutUnsupported],
  ['a tar weight layer', modelpack([gguf('application/vnd.cncf.model.weight.v1.tar', { 'org.cncf.model.filepath': 'm.gguf' })]), Reason.LayoutUnsupported],
  ['a weight that is not a GGUF', modelpack([gguf(MODELPACK_RAW_WEIGHT, { 'org.cncf.model.filepath': 'model.safetensors' })]), Reason.LayoutUnsupported],
  ['two GGUF weights', modelpack([weight, weight]), Reason.LayoutUnsupported],
  ['65 layers', modelpack(Array.from({ length: 65 }, () => weight)), Reason.TooManyLayers],
  ['a GGUF layer of another digest', docker([gguf(DOCKER_MODEL_GGUF, {}, `sha256:${'b'.repeat(64)}`)]), Reason.LayerNotPinned],
  ['a GGUF layer without a size', docker([{ mediaType: DOCKER_MODEL_GGUF, digest: `sha256:${pin}` }]), Reason.OciManifestInvalid],
])('refuses %s', (_name, manifest, reason) => {
  expect(selectGgufLayer(manifest, pin)).toMatchObject({ reason });
});

it('parses oci:// references with a manifest digest only', () => {
  const digest = `sha256:${pin}`;
  expect(parseOciReference(`oci://registry.example:5000/org/model-q8@${digest}`, false)).toEqual({ registry: 'registry.example:5000', repository: 'org/model-q8', digest, plainHttp: false });
  for (const bad of [`oci://r/m:latest`, `oci://R/m@${digest}`, `oci://r/M@${digest}`, `oci://r/m@sha256:abc`, `oci://r/../m@${digest}`, `https://r/m@${digest}`]) expect(parseOciReference(bad, false)).toBeUndefined();
});
