// Leader election on a coordination.k8s.io/v1 Lease, with client-go's algorithm and defaults (lease
// 15 s, renew deadline 10 s, retry 2 s). Expiry is judged by when this replica last saw the lease
// change, not by the holder's timestamps, so clock skew between replicas does not matter. Updates
// carry the resourceVersion read, so two candidates cannot both win.
import type { Logger } from 'pino';
import { sleep, systemClock, type Clock } from './clock.js';
import { KubeApiError, type KubeClient } from './kube-client.js';
import type { RuntimeMetrics } from './metrics.js';

interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

interface Lease {
  apiVersion: 'coordination.k8s.io/v1';
  kind: 'Lease';
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: LeaseSpec;
}

export interface LeaderElectionOptions {
  client: KubeClient;
  namespace: string;
  /** The Lease name. */
  name: string;
  /** Unique per replica. */
  identity: string;
  logger: Logger;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  clock?: Clock;
  metrics?: RuntimeMetrics;
}

export interface LeaderCallbacks {
  onStartedLeading(): void | Promise<void>;
  /** Called once when leadership is lost (not when released by `stop`); the process should exit. */
  onStoppedLeading(): void;
}

function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class LeaderElector {
  private readonly clock: Clock;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly log: Logger;
  private readonly path: string;
  private observed?: { record: string; at: number };
  private lease?: Lease;
  private leading = false;
  private readonly stopController = new AbortController();
  private loop?: Promise<void>;

  constructor(private readonly opts: LeaderElectionOptions) {
    this.clock = opts.clock ?? systemClock;
    this.leaseDurationMs = opts.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = opts.retryPeriodMs ?? 2_000;
    this.log = opts.logger.child({ lease: `${opts.namespace}/${opts.name}`, identity: opts.identity });
    this.path = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(opts.namespace)}/leases`;
    opts.metrics?.leaderElectionMasterStatus.set({ name: opts.name }, 0);
  }

  isLeader(): boolean {
    return this.leading;
  }

  /** Campaigns until elected, then renews; returns at once (the loop runs in the background). */
  start(callbacks: LeaderCallbacks): void {
    if (this.loop) throw new Error('leader election already started');
    this.loop = this.run(callbacks);
  }

  /** Stops campaigning; a leader releases the Lease so that another replica takes over at once. */
  async stop(): Promise<void> {
    this.stopController.abort();
    await this.loop;
    if (this.leading) {
      await this.release();
      this.setLeading(false);
    }
  }

  private get stopped(): boolean {
    return this.stopController.signal.aborted;
  }

  private setLeading(leading: boolean): void {
    this.leading = leading;
    this.opts.metrics?.leaderElectionMasterStatus.set({ name: this.opts.name }, leading ? 1 : 0);
  }

  private async run(callbacks: LeaderCallbacks): Promise<void> {
    while (!this.stopped && !(await this.tryAcquireOrRenew())) {
      await sleep(this.clock, this.retryPeriodMs * (1 + Math.random() * 0.1), this.stopController.signal);
    }
    if (this.stopped) return;
    this.setLeading(true);
    this.log.info('became leader');
    // Starting the controllers may wait for caches; the Lease must keep being renewed meanwhile.
    void Promise.resolve()
      .then(() => callbacks.onStartedLeading())
      .catch((err: unknown) => {
        this.log.error({ err }, 'could not start leading');
        this.stopController.abort();
        this.setLeading(false);
        callbacks.onStoppedLeading();
      });
    let lastRenew = this.clock.now();
    while (!this.stopped) {
      await sleep(this.clock, this.retryPeriodMs, this.stopController.signal);
      if (this.stopped) return;
      if (await this.tryAcquireOrRenew()) {
        lastRenew = this.clock.now();
      } else if (this.clock.now() - lastRenew >= this.renewDeadlineMs) {
        this.setLeading(false);
        this.log.error({ renewDeadlineMs: this.renewDeadlineMs }, 'leadership lost');
        callbacks.onStoppedLeading();
        return;
      }
    }
  }

  /** One attempt to take or keep the Lease; false on any failure (it is retried). */
  private async tryAcquireOrRenew(): Promise<boolean> {
    const now = this.clock.now();
    const durationSeconds = Math.ceil(this.leaseDurationMs / 1000);
    try {
      const got = await this.opts.client.raw<Lease>({ method: 'GET', path: `${this.path}/${encodeURIComponent(this.opts.name)}`, timeoutMs: this.renewDeadlineMs });
      if (got.status === 404) {
        this.lease = await this.opts.client.request<Lease>({
          method: 'POST',
          path: this.path,
          timeoutMs: this.renewDeadlineMs,
          body: {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: { name: this.opts.name, namespace: this.opts.namespace },
            spec: {
              holderIdentity: this.opts.identity,
              leaseDurationSeconds: durationSeconds,
              acquireTime: microTime(now),
              renewTime: microTime(now),
              leaseTransitions: 0,
            },
          },
        });
        this.observed = { record: JSON.stringify(this.lease.spec), at: now };
        return true;
      }
      if (got.status !== 200) throw new KubeApiError(got.status, got.body as never, 'GET', this.path);
      const lease = got.body;
      const record = JSON.stringify(lease.spec);
      if (this.observed?.record !== record) this.observed = { record, at: now };
      const holder = lease.spec.holderIdentity ?? '';
      const heldByOther = holder !== '' && holder !== this.opts.identity;
      const expiresAt = (this.observed?.at ?? now) + (lease.spec.leaseDurationSeconds ?? durationSeconds) * 1000;
      if (heldByOther && expiresAt > now) return false;
      const mine = holder === this.opts.identity;
      const spec: LeaseSpec = {
        holderIdentity: this.opts.identity,
        leaseDurationSeconds: durationSeconds,
        acquireTime: mine && lease.spec.acquireTime ? lease.spec.acquireTime : microTime(now),
        renewTime: microTime(now),
        leaseTransitions: (lease.spec.leaseTransitions ?? 0) + (mine ? 0 : 1),
      };
      this.lease = await this.opts.client.request<Lease>({
        method: 'PUT',
        path: `${this.path}/${encodeURIComponent(this.opts.name)}`,
        timeoutMs: this.renewDeadlineMs,
        body: { ...lease, spec },
      });
      this.observed = { record: JSON.stringify(this.lease.spec), at: now };
      if (!mine) this.log.info({ previousHolder: holder || undefined }, 'acquired lease');
      return true;
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 409)) this.log.warn({ err }, 'lease update failed');
      return false;
    }
  }

  /** Empties the holder and shortens the lease (client-go ReleaseOnCancel). */
  private async release(): Promise<void> {
    if (!this.lease) return;
    const now = this.clock.now();
    try {
      await this.opts.client.request({
        method: 'PUT',
        path: `${this.path}/${encodeURIComponent(this.opts.name)}`,
        timeoutMs: 5_000,
        body: { ...this.lease, spec: { ...this.lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime(now) } },
      });
      this.log.info('released lease');
    } catch (err) {
      this.log.warn({ err }, 'could not release lease');
    }
  }
}
