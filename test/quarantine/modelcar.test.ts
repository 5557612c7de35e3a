// KServe modelcar images against a real registry (CNCF distribution on loopback): the layers are
// made by GNU tar (gzip and plain) and pushed by oras with the OCI image media types; the agent
// reads the layer stream and quarantines the one models/*.gguf. A link under models/, a path out of
// the root, too many entries, two GGUFs and a GGUF that is not the pin are refused at Fetch with
// their own reason, with nothing left in staging.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCommand } from '../../agents/src/exec.js';
import type { OciModelSource } from '../../agents/src/quarantine/oci-source.js';
import { verifyArtifact } from '../../agents/src/quarantine/pipeline.js';
import { DEFAULT_QUARANTINE_POLICY } from '../../agents/src/quarantine/policy.js';
import { createScannerSandbox } from '../../agents/src/quarantine/scanner-sandbox.js';
import { tinyModelBytes } from '../support/tiny-model.js';
import { startRegistry, type TestRegistry } from './oci-registry.js';

let dir: string;
let registry: TestRegistry;
const digests: Record<string, string> = {};
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const model = tinyModelBytes();
const other = tinyModelBytes(2);
const GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
const TAR = 'application/vnd.oci.image.layer.v1.tar';

/** A layer made by GNU tar from `files` (path -> bytes, or { link } for a symlink). */
function layer(name: string, files: Record<string, Buffer | { link: string }>, tarArgs: string[] = [], gzip = true): Buffer {
  const root = mkdtempSync(join(dir, `${name}-`));
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    if (Buffer.isBuffer(content)) writeFileSync(join(root, path), content);
    else symlinkSync(content.link, join(root, path));
  }
  const out = join(dir, `${name}.tar${gzip ? '.gz' : ''}`);
  const tops = [...new Set(Object.keys(files).map((p) => p.split('/')[0]!))];
  execFileSync('tar', [gzip ? '-czf' : '-cf', out, '--owner=0', '--group=0', ...tarArgs, '-C', root, ...tops]);
  return readFileSync(out);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'modelcar-'));
  registry = await startRegistry(dir);
  const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
  const base = layer('base', { 'etc/hostname': Buffer.from('modelcar\n'), 'bin/true': Buffer.from('#!/bin/sh\n') });
  const image = async (tag: string, layers: Record<string, [Buffer, string]>) =>
    (digests[tag] = await registry.push('models/car', tag, { 'config.json': config, 'base.tar.gz': base, ...Object.fromEntries(Object.entries(layers).map(([f, [b]]) => [f, b])) }, ['--config', 'config.json:application/vnd.oci.image.config.v1+json'], [`base.tar.gz:${GZIP}`, ...Object.entries(layers).map(([f, [, t]]) => `${f}:${t}`)]));
  await image('good', { 'model.tar.gz': [layer('good', { 'models/model.gguf': model, 'models/README.md': Buffer.from('a tiny model\n') }), GZIP] });
  await image('plain', { 'model.tar': [layer('plain', { 'models/tiny/model.gguf': model }, [], false), TAR] });
  await image('link', { 'model.tar.gz': [layer('link', { 'models/model.gguf': { link: '/etc/shadow' } }), GZIP] });
  await image('escape', { 'model.tar.gz': [layer('escape', { 'models/model.gguf': model }, ['-P', '--transform', 's,^models,../models,']), GZIP] });
  const many: Record<string, Buffer> = { 'models/model.gguf': model };
  for (let i = 0; i < 4100; i++) many[`models/extra/${i}.txt`] = Buffer.from('x');
  await image('many', { 'model.tar.gz': [layer('many', many), GZIP] });
  await image('two', { 'model.tar.gz': [layer('two', { 'models/a.gguf': model, 'models/b.gguf': other }), GZIP] });
  await image('two-layers', { 'a.tar.gz': [layer('two-a', { 'models/a.gguf': model }), GZIP], 'b.tar.gz': [layer('two-b', { 'models/b.gguf': model }), GZIP] });
  await image('other', { 'model.tar.gz': [layer('other', { 'models/model.gguf': other }), GZIP] });
  await image('none', { 'model.tar.gz': [layer('none', { 'models/README.md': Buffer.from('no model\n') }), GZIP] });
}, 300_000);

afterAll(async () => {
  await registry?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function pull(tag: string) {
  const staging = join(dir, 'staging');
  mkdirSync(staging, { recursive: true });
  const oci: OciModelSource = { registry: registry.host, repository: 'models/car', digest: digests[tag]!, plainHttp: true };
  const sandbox = createScannerSandbox({ exec: runCommand, policy: DEFAULT_QUARANTINE_POLICY.scanner });
  const { results, staged } = await verifyArtifact({ source: { kind: 'oci', oci }, pin: { sha256: sha256(model) }, policy: DEFAULT_QUARANTINE_POLICY }, { sandbox, stagingDir: staging });
  if (staged?.owned) rmSync(staged.path);
  return { results, left: readdirSync(staging) };
}

it.each([
  ['good', 'models/model.gguf'],
  ['plain', 'models/tiny/model.gguf'],
])('quarantines the one models/*.gguf of a modelcar image (%s layer) and trusts it', async (tag, path) => {
  const { results } = await pull(tag);
  expect(results.filter((r) => r.status === 'failed')).toEqual([]);
  expect(results[0]).toMatchObject({ stage: 'Fetch', details: { layout: 'modelcar', path, sizeBytes: model.length } });
  expect(results.find((r) => r.stage === 'Integrity')).toMatchObject({ status: 'passed' });
}, 120_000);

it.each([
  ['a symlink under models/', 'link', 'Fetch: ArchiveLinkRefused'],
  ['a path out of the image root', 'escape', 'Fetch: ArchivePathEscape'],
  ['more entries than the limit', 'many', 'Fetch: ArchiveTooManyEntries'],
  ['two GGUFs in one layer', 'two', 'Fetch: LayoutUnsupported'],
  ['two GGUFs in two layers', 'two-layers', 'Fetch: LayoutUnsupported'],
  ['a GGUF that is not the pin', 'other', 'Fetch: LayerNotPinned'],
  ['no GGUF at all', 'none', 'Fetch: LayoutUnsupported'],
])('refuses an image with %s', async (_name, tag, expected) => {
  const { results, left } = await pull(tag);
  expect(`${results[0]!.stage}: ${results[0]!.reason}`).toBe(expected);
  expect(left).toEqual([]);
}, 120_000);
