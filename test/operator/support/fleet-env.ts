// A dedicated control plane for a test that runs an operator (which reconciles every cluster-scoped
// CR, so it must not share a plane with tests running in parallel), with helpers to create fleet
// objects and read them back.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resourcePath } from '../../../api/crd/paths.js';
import { startControlPlane, stopControlPlane, type ControlPlaneState } from '../../../hack/control-plane/control-plane.js';
import { installCrds } from '../../../hack/control-plane/crds.js';
import { KubeClient } from '../../../operator/src/runtime/kube-client.js';

export const OPERATOR_NAMESPACE = 'secai-system';

export interface KubeObjectLike {
  apiVersion?: string;
  kind?: string;
  metadata: { name?: string; namespace?: string; resourceVersion?: string; uid?: string; labels?: Record<string, string>; finalizers?: string[]; generation?: number; deletionTimestamp?: string; ownerReferences?: { kind: string; name: string }[] };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
}

export class FleetEnv {
  private constructor(
    readonly dir: string,
    readonly state: ControlPlaneState,
    readonly admin: KubeClient,
  ) {}

  static async start(prefix: string): Promise<FleetEnv> {
    const dir = mkdtempSync(join(tmpdir(), `secai-op-${prefix}-`));
    try {
      const state = await startControlPlane({ dir: join(dir, 'cp') });
      await installCrds(state.kubeconfig);
      const admin = await KubeClient.fromKubeconfigFile(state.kubeconfig);
      await admin.request({ method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name: OPERATOR_NAMESPACE } } });
      return new FleetEnv(dir, state, admin);
    } catch (err) {
      await stopControlPlane(join(dir, 'cp'));
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  get kubeconfig(): string {
    return this.state.kubeconfig;
  }

  async stop(): Promise<void> {
    this.admin.close();
    await stopControlPlane(join(this.dir, 'cp'));
    rmSync(this.dir, { recursive: true, force: true });
  }

  async createNode(name: string, labels: Record<string, string> = { 'secai.io/node': 'true' }): Promise<KubeObjectLike> {
    return this.admin.request({ method: 'POST', path: '/api/v1/nodes', body: { apiVersion: 'v1', kind: 'Node', metadata: { name, labels } } });
  }

  async labelNode(name: string, labels: Record<string, string | null>): Promise<void> {
    await this.admin.request({ method: 'PATCH', path: `/api/v1/nodes/${name}`, body: { metadata: { labels } }, contentType: 'application/merge-patch+json' });
  }

  node(name: string): Promise<KubeObjectLike & { spec?: { taints?: { key: string; effect: string }[] } }> {
    return this.admin.request({ method: 'GET', path: `/api/v1/nodes/${name}` });
  }

  async apply(plural: string, obj: { metadata: { name: string } } & Record<string, unknown>): Promise<KubeObjectLike> {
    return this.admin.request({
      method: 'PATCH',
      path: resourcePath(plural, obj.metadata.name),
      query: { fieldManager: 'test-admin', force: true },
      body: { apiVersion: 'secai.io/v1alpha1', ...obj },
      contentType: 'application/apply-patch+yaml',
    });
  }

  async get(plural: string, name: string): Promise<KubeObjectLike | undefined> {
    const res = await this.admin.raw<KubeObjectLike>({ method: 'GET', path: resourcePath(plural, name) });
    return res.status === 200 ? res.body : undefined;
  }

  async list(plural: string): Promise<KubeObjectLike[]> {
    return (await this.admin.request<{ items: KubeObjectLike[] }>({ method: 'GET', path: resourcePath(plural) })).items;
  }

  async remove(plural: string, name: string): Promise<void> {
    await this.admin.raw({ method: 'DELETE', path: resourcePath(plural, name) });
  }

  async events(regardingName: string): Promise<{ reason: string; type: string; note: string }[]> {
    const list = await this.admin.request<{ items: { reason: string; type: string; note: string }[] }>({
      method: 'GET',
      path: '/apis/events.k8s.io/v1/namespaces/default/events',
      query: { fieldSelector: `regarding.name=${regardingName}` },
    });
    return list.items;
  }

  /**
   * The reasons of the Events about an object, once every reason in `expected` is among them (as
   * often as listed). Controllers record an Event after the status write that a test waits for, so
   * a single read right after could miss it.
   */
  async eventReasons(regardingName: string, expected: string[], timeoutMs = 10_000): Promise<string[]> {
    const count = (list: string[], reason: string) => list.filter((r) => r === reason).length;
    let reasons: string[] = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      reasons = (await this.events(regardingName)).map((e) => e.reason);
      if (expected.every((r) => count(reasons, r) >= count(expected, r))) return reasons;
      if (Date.now() > deadline) return reasons;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async createSecret(name: string, data: Record<string, string>, namespace = OPERATOR_NAMESPACE, type?: string): Promise<void> {
    await this.admin.request({ method: 'POST', path: `/api/v1/namespaces/${namespace}/secrets`, body: { metadata: { name }, stringData: data, ...(type ? { type } : {}) } });
  }

  async createConfigMap(name: string, data: Record<string, string>, namespace = OPERATOR_NAMESPACE): Promise<void> {
    await this.admin.request({ method: 'POST', path: `/api/v1/namespaces/${namespace}/configmaps`, body: { metadata: { name }, data } });
  }
}

export function condition(obj: KubeObjectLike | undefined, type: string): { status: string; reason: string; message: string } | undefined {
  const conditions = (obj?.status?.conditions ?? []) as { type: string; status: string; reason: string; message: string }[];
  return conditions.find((c) => c.type === type);
}
