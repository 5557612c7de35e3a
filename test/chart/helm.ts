// Runs the helm that hack/ builds, hermetically: its cache, config and data in a directory of the
// test's own, Kubernetes 1.36.3 for offline rendering, and the rendered manifests parsed.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { REPO_ROOT, toolPath } from '../../hack/control-plane/control-plane.js';

export const CHART = join(REPO_ROOT, 'charts/secai-fleet');
export const KUBE_VERSION = '1.36.3';

export interface KubeDoc {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class Helm {
  private constructor(readonly home: string) {}

  /** A helm with its own HELM_CACHE_HOME, HELM_CONFIG_HOME and HELM_DATA_HOME under a fresh directory. */
  static create(): Helm {
    return new Helm(mkdtempSync(join(tmpdir(), 'secai-helm-')));
  }

  dispose(): void {
    rmSync(this.home, { recursive: true, force: true });
  }

  run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<HelmResult> {
    return new Promise((resolve, reject) => {
      execFile(
        toolPath('helm'),
        args,
        {
          cwd: REPO_ROOT,
          maxBuffer: 64 * 1024 * 1024,
          timeout: 120_000,
          env: {
            PATH: process.env.PATH,
            HOME: this.home,
            HELM_CACHE_HOME: join(this.home, 'cache'),
            HELM_CONFIG_HOME: join(this.home, 'config'),
            HELM_DATA_HOME: join(this.home, 'data'),
            KUBECONFIG: join(this.home, 'no-kubeconfig'),
            ...env,
          },
        },
        (error, stdout, stderr) => {
          if (error && typeof error.code !== 'number') reject(error);
          else resolve({ code: error ? Number(error.code) : 0, stdout, stderr });
        },
      );
    });
  }

  /** Writes values to a file in helm's home and returns `--values FILE` (JSON is YAML). */
  valuesArgs(values: object | undefined): string[] {
    if (!values) return [];
    const file = join(this.home, `values-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(file, JSON.stringify(values));
    return ['--values', file];
  }

  /** `helm template` offline; resolves to the exit code and output, failures included. */
  template(opts: { values?: object; namespace?: string; apiVersions?: string[]; chart?: string } = {}): Promise<HelmResult> {
    return this.run([
      'template', 'secai-fleet', opts.chart ?? CHART,
      '--namespace', opts.namespace ?? 'secai-system',
      '--kube-version', KUBE_VERSION,
      ...(opts.apiVersions ?? []).flatMap((v) => ['--api-versions', v]),
      ...this.valuesArgs(opts.values),
    ]);
  }

  /** The rendered objects; throws with helm's message when rendering fails. */
  async render(opts: Parameters<Helm['template']>[0] = {}): Promise<KubeDoc[]> {
    const result = await this.template(opts);
    if (result.code !== 0) throw new Error(`helm template failed: ${result.stderr}`);
    return parseManifests(result.stdout);
  }
}

export function parseManifests(text: string): KubeDoc[] {
  return parseAllDocuments(text)
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(`rendered YAML does not parse: ${doc.errors[0]!.message}`);
      return doc.toJS({ maxAliasCount: -1 }) as KubeDoc | null;
    })
    .filter((doc): doc is KubeDoc => doc !== null);
}

export function find(docs: KubeDoc[], kind: string, name: string): KubeDoc {
  const doc = docs.find((d) => d.kind === kind && d.metadata.name === name);
  if (!doc) throw new Error(`no ${kind} ${name} in [${docs.map((d) => `${d.kind}/${d.metadata.name}`).join(', ')}]`);
  return doc;
}
