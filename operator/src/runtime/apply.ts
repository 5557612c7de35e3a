// Server-side apply with one field manager per component. Status goes through the /status
// subresource with the apply content type set explicitly, and is not sent at all when it equals what
// is there. "What is there" is the informer cache, unless this process wrote a newer status the
// cache has not caught up with yet: otherwise a reconcile right after a write would see its own
// write undone, write again and announce the same transition twice.
import { canonicalJson } from '../../../api/canonical-json.js';
import { CONTENT_TYPE, type KubeClient } from './kube-client.js';

export interface ApplyTarget {
  /** The object's REST path, for example `/apis/secai.io/v1alpha1/models/m1`. */
  path: string;
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string;
}

/** An object as read from the cache: its resourceVersion and current status. */
export interface CachedStatus<S = unknown> {
  metadata: { resourceVersion?: string };
  status?: S;
}

/** Whether two JSON values are equal regardless of key order and undefined members. */
export function semanticallyEqual(a: unknown, b: unknown): boolean {
  return canonicalJson(a ?? null) === canonicalJson(b ?? null);
}

/** resourceVersions are etcd revisions; anything else compares as "not newer", so the cache wins. */
function newer(a: string | undefined, b: string | undefined): boolean {
  return Number(a) > Number(b);
}

export class Applier {
  private readonly written = new Map<string, { resourceVersion?: string; status: unknown }>();

  constructor(
    private readonly client: KubeClient,
    readonly fieldManager: string,
  ) {}

  /**
   * Applies the fields in `body` (an object with apiVersion, kind and metadata.name). Without `force`
   * a field another manager owns is a conflict (409), never silently taken over.
   */
  async apply<T>(path: string, body: Record<string, unknown>, opts: { force?: boolean } = {}): Promise<T> {
    return this.client.request<T>({
      method: 'PATCH',
      path,
      query: { fieldManager: this.fieldManager, force: opts.force ? true : undefined },
      body,
      contentType: CONTENT_TYPE.apply,
    });
  }

  /** The status to compare with: the cached one, or the one this process wrote if that is newer. */
  observedStatus<S>(path: string, cached: CachedStatus<S> | undefined): S | undefined {
    const mine = this.written.get(path);
    if (!mine) return cached?.status;
    if (cached && !newer(mine.resourceVersion, cached.metadata.resourceVersion)) {
      this.written.delete(path);
      return cached.status;
    }
    return mine.status as S;
  }

  /**
   * Applies `status` through the status subresource unless it equals the observed status. The
   * operator is the only writer of status, so it forces ownership of the fields it sets. Returns
   * whether it wrote.
   */
  async applyStatus(target: ApplyTarget, status: unknown, cached: CachedStatus | undefined): Promise<boolean> {
    if (semanticallyEqual(status, this.observedStatus(target.path, cached))) return false;
    const result = await this.apply<{ metadata?: { resourceVersion?: string }; status?: unknown }>(
      `${target.path}/status`,
      {
        apiVersion: target.apiVersion,
        kind: target.kind,
        metadata: { name: target.name, ...(target.namespace ? { namespace: target.namespace } : {}) },
        status,
      },
      { force: true },
    );
    this.written.set(target.path, { resourceVersion: result.metadata?.resourceVersion, status: result.status });
    return true;
  }

  /** Forgets what was written to an object that is gone. */
  forget(path: string): void {
    this.written.delete(path);
  }
}
