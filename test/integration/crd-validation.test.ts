// The CRDs on the real API server: every sample is accepted, and every invalid object in the
// negative corpus is rejected with a message that names the offending field.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { pluralOf, resourcePath } from '../../api/crd/paths.js';
import { REPO_ROOT } from '../../hack/control-plane/control-plane.js';
import { KubeClient, type KubeStatus } from '../../operator/src/runtime/kube-client.js';
import { sharedKubeconfig } from '../support/environment.js';

interface Manifest {
  kind: string;
  metadata: { name: string; resourceVersion?: string };
}

const CORPUS = join(REPO_ROOT, 'test', 'corpus', 'invalid-crs');
const SAMPLES = join(REPO_ROOT, 'crds', 'samples');

function documents(path: string): Manifest[] {
  return parseAllDocuments(readFileSync(path, 'utf8')).map((d) => d.toJSON() as Manifest);
}

const corpus = readdirSync(CORPUS)
  .filter((f) => f.endsWith('.yaml'))
  .sort()
  .map((file, index) => {
    const text = readFileSync(join(CORPUS, file), 'utf8');
    const expect = /^# expect: (\S+)$/m.exec(text)?.[1];
    if (!expect) throw new Error(`${file} has no "# expect: <field>" line`);
    return { file, expect, docs: documents(join(CORPUS, file)), name: `negative-${index}` };
  });

let client: KubeClient;

beforeAll(async () => {
  client = await KubeClient.fromKubeconfigFile(sharedKubeconfig());
});

afterAll(() => client.close());

async function remove(plural: string, name: string): Promise<void> {
  await client.raw({ method: 'DELETE', path: resourcePath(plural, name) });
}

describe('the negative corpus', () => {
  it('holds at least 40 invalid objects across all five kinds', () => {
    expect(corpus.length).toBeGreaterThanOrEqual(40);
    expect(new Set(corpus.map((c) => c.docs[0]?.kind))).toEqual(
      new Set(['Model', 'EgressPolicy', 'VaultPolicy', 'InferenceService', 'SecAINode']),
    );
  });

  it.each(corpus)('$file is rejected naming $expect', async ({ docs, expect: field, name }) => {
    const [first, update] = docs;
    if (!first) throw new Error('empty corpus file');
    const plural = pluralOf(first.kind);
    first.metadata.name = name;
    try {
      let rejected: { status: number; body: KubeStatus };
      if (update) {
        const created = await client.request<Manifest>({ method: 'POST', path: resourcePath(plural), body: first });
        update.metadata.name = name;
        update.metadata.resourceVersion = created.metadata.resourceVersion;
        rejected = await client.raw<KubeStatus>({
          method: 'PUT',
          path: resourcePath(plural, name),
          body: update,
          query: { fieldValidation: 'Strict' },
        });
      } else {
        rejected = await client.raw<KubeStatus>({
          method: 'POST',
          path: resourcePath(plural),
          body: first,
          query: { fieldValidation: 'Strict' },
        });
      }
      expect([400, 422]).toContain(rejected.status);
      expect(rejected.body.message).toContain(field);
    } finally {
      await remove(plural, name);
    }
  });
});

describe('the samples', () => {
  const samples = readdirSync(SAMPLES)
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((file) => documents(join(SAMPLES, file)).map((doc) => ({ file, doc, label: `${file}: ${doc.kind}/${doc.metadata.name}` })));

  it('cover all five kinds', () => {
    expect(new Set(samples.map((s) => s.doc.kind)).size).toBe(5);
  });

  it.each(samples)('$label is accepted', async ({ doc }) => {
    const plural = pluralOf(doc.kind);
    try {
      const created = await client.request<Manifest>({
        method: 'POST',
        path: resourcePath(plural),
        body: doc,
        query: { fieldValidation: 'Strict' },
      });
      expect(created.metadata.name).toBe(doc.metadata.name);
    } finally {
      await remove(plural, doc.metadata.name);
    }
  });
});
