// The model duty: every artifact the plan names goes through the node's own quarantine before it is
// trusted; revoked digests are contained wherever they are; artifacts the plan no longer names are
// removed. Quarantines run one at a time in the background (a model can take minutes); the report
// says where each artifact stands and, when rejected, the first failing stage and its reason.
//
// It also keeps the trusted store honest. Each run compares every trusted file (artifact and
// manifest) with its recorded state (inode, size, mtime, ctime); inotify wakes the run as soon as
// anything in the store changes. A file that changed or vanished is suspended at once (inference
// stops serving it) and re-verified by a full hash; it is served again only if it still hashes to
// its digest, and otherwise removed and quarantined afresh from its source. A full re-hash of the
// whole store on a slow cadence (daily by default) catches bit changes no stat shows.
import { type FSWatcher, watch as watchDirectory } from 'node:fs';
import type { Logger } from 'pino';
import { DutyStatus, ModelState, type Command, type CommandResult, type ModelPlan, type ModelReport, type NodePlan, type Report } from '../../../../api/gen/proto/secai/fleet/v1/agent.js';
import { DriftKind, DutyReason } from '../../../../api/proto/duty-results.js';
import type { AuditSink } from '../../audit/audit-sink.js';
import type { TrustedModels } from '../../inference/inference-service-manager.js';
import { containModel, quarantineModel, type QuarantineDeps } from '../../quarantine/pipeline.js';
import { applyOverrides, policyDigest, type QuarantinePolicy } from '../../quarantine/policy.js';
import { sameStoredState, type StoredFileState } from '../../file-state.js';
import { Stage } from '../../quarantine/verdict.js';
import type { Duty, DutyContext, DutyOutcome } from '../node-agent.js';

/** A fetch that failed (the network, the source) is retried with backoff; content verdicts are not. */
const RETRY_INITIAL_MS = 15_000;
const RETRY_MAX_MS = 10 * 60_000;
/** How often the store's files are compared with their recorded state (a stat each). */
export const STORE_RESYNC_MS = 5_000;
/** How often every trusted artifact is hashed in full. */
export const STORE_REHASH_MS = 24 * 60 * 60_000;
/** An evidence bundle carries at most this many manifests, in all this many bytes (a ConfigMap holds 1 MiB). */
const MAX_EVIDENCE_MANIFESTS = 256;
const MAX_EVIDENCE_MANIFEST_BYTES = 512 * 1024;
/** Filesystem events within this window wake one run. */
const WATCH_DEBOUNCE_MS = 20;

interface Entry {
  plan: ModelPlan;
  /** What the plan asked for when this entry was made: a change means a fresh quarantine. */
  key: string;
  report: ModelReport;
  /** A failed fetch is retried after this (ms since the epoch). */
  retryAt?: number;
  retries: number;
}

/** The recorded state of a trusted digest's two files. */
interface Baseline {
  artifact?: StoredFileState;
  manifest?: StoredFileState;
}

export interface QuarantineDutyOptions {
  deps: QuarantineDeps;
  nodePolicy: QuarantinePolicy;
  audit: AuditSink;
  logger: Logger;
  /** Called when the set of servable digests changed (inference re-checks what it may serve). */
  trustChanged: () => void;
  resyncMs?: number;
  rehashMs?: number;
  /** Watch the store directory with inotify (default true). */
  watch?: boolean;
}

export class QuarantineDuty implements Duty, TrustedModels {
  readonly name = 'models' as const;
  readonly resyncMs: number;
  private readonly entries = new Map<string, Entry>();
  private readonly contained = new Map<string, ModelReport>();
  private trusted = new Set<string>();
  /** Trusted digests whose files changed: not served until a full hash clears them. */
  private readonly suspended = new Set<string>();
  private readonly baselines = new Map<string, Baseline>();
  private queue: Promise<void> = Promise.resolve();
  private started = false;
  private stopped = false;
  private lastRehashAt = 0;
  /** The plan generation of the last run. */
  private generation: number | undefined;
  private ctx: DutyContext | undefined;
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;

  constructor(private readonly opts: QuarantineDutyOptions) {
    this.resyncMs = opts.resyncMs ?? STORE_RESYNC_MS;
  }

  /** For inference: the path of a digest this node's quarantine trusts, and is neither contained nor suspended. */
  pathOf(sha256: string): string | undefined {
    return this.trusted.has(sha256) && !this.suspended.has(sha256) ? this.opts.deps.store.artifactPath(sha256) : undefined;
  }

  private entryKey(model: ModelPlan): string {
    // A credential enters the key by its revision only: the key is a string held for the agent's life.
    const oci = model.oci && { ...model.oci, credential: model.oci.credential?.revision };
    return JSON.stringify([model.sha256, model.url, oci, model.revision, model.allowInsecureHttp, policyDigest(applyOverrides(this.opts.nodePolicy, model.quarantine)), model.signature]);
  }

  watch(ctx: DutyContext): void {
    this.ctx = ctx;
    if (this.opts.watch === false || this.watcher) return;
    try {
      this.watcher = watchDirectory(this.opts.deps.store.trustedDirectory, { persistent: false }, () => {
        clearTimeout(this.debounce);
        this.debounce = setTimeout(() => ctx.wake(), WATCH_DEBOUNCE_MS);
      });
      this.watcher.on('error', (error) => this.opts.logger.warn({ duty: 'models', err: error.message }, 'store watch failed; the resync covers'));
    } catch (error) {
      this.opts.logger.warn({ duty: 'models', err: (error as Error).message }, 'cannot watch the trusted store; the resync covers');
    }
  }

  async converge(plan: NodePlan, ctx: DutyContext): Promise<DutyOutcome> {
    this.ctx = ctx;
    const store = this.opts.deps.store;
    if (!this.started) {
      await store.init();
      this.trusted = new Set(await store.trustedDigests());
      for (const sha of this.trusted) await this.adoptBaseline(sha);
      this.lastRehashAt = Date.now();
      this.started = true;
    }
    const revoked = new Map(plan.revoked.map((r) => [r.sha256, r]));
    // Containment first: a revoked digest stops being servable before anything else happens.
    for (const r of plan.revoked) {
      if (!this.contained.has(r.sha256) || this.trusted.has(r.sha256)) {
        await containModel(r.sha256, `revoked: ${r.reason}`.slice(0, 256), { store, audit: this.opts.audit, clock: () => new Date() });
        this.forget(r.sha256);
        this.opts.trustChanged();
      }
      this.contained.set(r.sha256, { name: r.name, sha256: r.sha256, state: ModelState.MODEL_STATE_CONTAINED, stage: '', reason: 'Revoked', message: r.reason.slice(0, 1024) });
    }
    for (const sha of [...this.contained.keys()]) if (!revoked.has(sha)) this.contained.delete(sha);

    await this.checkStore(ctx);

    const newPlan = plan.generation !== this.generation;
    this.generation = plan.generation;
    const wanted = new Set<string>();
    for (const model of plan.models) {
      if (revoked.has(model.sha256)) continue;
      wanted.add(model.name);
      const key = this.entryKey(model);
      const existing = this.entries.get(model.name);
      if (existing && existing.key === key) {
        existing.plan = model;
        // A fetch that failed may succeed under a new plan (its egress may allow the source now).
        if (newPlan && existing.retryAt !== undefined) existing.retryAt = Date.now();
        continue;
      }
      const trustedNow = (await store.lookup(model.sha256))?.policyDigest === policyDigest(applyOverrides(this.opts.nodePolicy, model.quarantine));
      this.entries.set(model.name, {
        plan: model,
        key,
        retries: 0,
        report: {
          name: model.name,
          sha256: model.sha256,
          state: trustedNow ? ModelState.MODEL_STATE_TRUSTED : ModelState.MODEL_STATE_PENDING,
          stage: '',
          reason: trustedNow ? 'Passed' : 'Queued',
          message: trustedNow ? 'trusted by this node' : 'waiting for quarantine',
        },
      });
      if (trustedNow && !this.trusted.has(model.sha256)) {
        this.trusted.add(model.sha256);
        await this.adoptBaseline(model.sha256);
        this.opts.trustChanged();
      }
    }
    await this.removeUnwanted(wanted, revoked);
    this.startDue();
    return this.outcome();
  }

  /** Artifacts no plan model names any more leave the trusted store (the operator waits for it). */
  private async removeUnwanted(wanted: Set<string>, revoked: Map<string, unknown>): Promise<void> {
    for (const [name, entry] of this.entries) {
      if (wanted.has(name)) continue;
      this.entries.delete(name);
      const sha = entry.plan.sha256;
      const stillUsed = [...this.entries.values()].some((e) => e.plan.sha256 === sha);
      if (stillUsed || revoked.has(sha)) continue;
      const { removed } = await this.opts.deps.store.remove(sha);
      if (this.forget(sha)) this.opts.trustChanged();
      if (removed) await this.opts.audit.record({ type: 'model.removed', subject: sha, data: { name } });
    }
  }

  /** Drops everything known of a digest's trust; true when it was trusted. */
  private forget(sha256: string): boolean {
    this.suspended.delete(sha256);
    this.baselines.delete(sha256);
    return this.trusted.delete(sha256);
  }

  /** Records the state the files are in now as the one to compare with; a manifest without one is re-verified. */
  private async adoptBaseline(sha256: string): Promise<void> {
    const [manifest, states] = await Promise.all([this.opts.deps.store.lookup(sha256), this.opts.deps.store.fileStates(sha256)]);
    this.baselines.set(sha256, { artifact: manifest?.artifact, manifest: states.manifest });
    // Promoted before states were recorded, or changed while the agent was down: hash it first.
    if (!manifest?.artifact || !sameStoredState(manifest.artifact, states.artifact)) this.suspend(sha256, 'its recorded state does not match the file');
  }

  /** Compares each trusted digest's files with their baseline; starts the periodic full re-hash. */
  private async checkStore(ctx: DutyContext): Promise<void> {
    const store = this.opts.deps.store;
    for (const sha of this.trusted) {
      if (this.suspended.has(sha)) continue;
      const baseline = this.baselines.get(sha);
      const now = await store.fileStates(sha);
      if (!now.artifact || !now.manifest) {
        await ctx.drift(DriftKind.StoreFileMissing, `trusted ${now.artifact ? 'manifest' : 'artifact'} of ${sha.slice(0, 16)} is gone`);
        this.suspend(sha, 'a file of it is gone');
      } else if (!sameStoredState(baseline?.artifact, now.artifact) || !sameStoredState(baseline?.manifest, now.manifest)) {
        const which = sameStoredState(baseline?.artifact, now.artifact) ? 'manifest' : 'artifact';
        await ctx.drift(DriftKind.StoreFileChanged, `trusted ${which} of ${sha.slice(0, 16)} changed (inode, size, mtime or ctime)`);
        this.suspend(sha, `its ${which} changed`);
      }
    }
    const interval = this.opts.rehashMs ?? STORE_REHASH_MS;
    if (Date.now() - this.lastRehashAt >= interval) {
      this.lastRehashAt = Date.now();
      for (const sha of this.trusted) if (!this.suspended.has(sha)) this.enqueue(() => this.reverify(sha, { routine: true }));
    }
  }

  /** Stops serving a digest at once and queues its full re-verification. */
  private suspend(sha256: string, why: string): void {
    if (this.suspended.has(sha256)) return;
    this.suspended.add(sha256);
    this.opts.trustChanged();
    this.opts.logger.warn({ duty: 'models', sha256, why }, 'trusted file suspended until re-verified');
    void this.opts.audit.record({ type: 'model.suspended', subject: sha256, data: { why } }).catch(() => undefined);
    this.enqueue(() => this.reverify(sha256, { routine: false }));
  }

  /**
   * Hashes a trusted artifact in full. Matching: it is served again and its files' state is the new
   * baseline. Not matching (or gone): it leaves the store, and every plan model naming it is
   * quarantined again from its source.
   */
  private async reverify(sha256: string, { routine }: { routine: boolean }): Promise<void> {
    if (this.stopped || !this.trusted.has(sha256)) return;
    const store = this.opts.deps.store;
    const started = Date.now();
    const result = await store.reverify(sha256).catch((error: Error) => ({ matches: false, actual: undefined, error: error.message }));
    if (!this.trusted.has(sha256)) return;
    if (result.matches) {
      const states = await store.fileStates(sha256);
      this.baselines.set(sha256, { artifact: states.artifact, manifest: states.manifest });
      if (this.suspended.delete(sha256)) this.opts.trustChanged();
      await this.opts.audit.record({ type: 'model.reverified', subject: sha256, data: { matches: true, routine, ms: Date.now() - started } });
    } else {
      if (routine) {
        await this.ctx?.drift(DriftKind.StoreHashMismatch, `trusted artifact ${sha256.slice(0, 16)} no longer hashes to its digest`);
        this.suspended.add(sha256);
        this.opts.trustChanged();
      }
      this.opts.logger.error({ duty: 'models', sha256, actual: result.actual }, 'trusted artifact failed re-verification; quarantining it again from its source');
      await this.opts.audit.record({ type: 'model.reverified', subject: sha256, data: { matches: false, routine, actual: result.actual ?? null } });
      await store.remove(sha256);
      this.forget(sha256);
      this.opts.trustChanged();
      for (const entry of this.entries.values()) {
        if (entry.plan.sha256 !== sha256) continue;
        entry.retries = 0;
        delete entry.retryAt;
        entry.report = { ...entry.report, state: ModelState.MODEL_STATE_PENDING, stage: '', reason: 'Queued', message: 'the trusted file changed; quarantining again from the source' };
      }
    }
    this.ctx?.wake();
  }

  private enqueue(job: () => Promise<void>): void {
    this.queue = this.queue.then(job).catch((error: Error) => this.opts.logger.error({ duty: 'models', err: error.message }, 'model job failed'));
  }

  /** Starts the quarantines that are pending or whose retry is due. */
  private startDue(): void {
    if (this.stopped) return;
    const now = Date.now();
    const due = [...this.entries.values()].filter(
      (e) => (e.report.state === ModelState.MODEL_STATE_PENDING && e.retryAt === undefined) || (e.retryAt !== undefined && e.retryAt <= now),
    );
    for (const entry of due) {
      entry.retryAt = undefined;
      entry.report = { ...entry.report, state: ModelState.MODEL_STATE_SCANNING, reason: 'Quarantining', message: 'fetching and scanning' };
      this.enqueue(() => this.quarantine(entry));
    }
    if (due.length > 0) this.ctx?.changed();
  }

  private async quarantine(entry: Entry): Promise<void> {
    if (this.stopped || this.entries.get(entry.plan.name) !== entry) return;
    const result = await quarantineModel(entry.plan, this.opts.nodePolicy, this.opts.deps);
    if (this.entries.get(entry.plan.name) !== entry) return;
    const { verdict } = result;
    if (verdict.trusted) {
      this.trusted.add(entry.plan.sha256);
      this.suspended.delete(entry.plan.sha256);
      await this.adoptBaseline(entry.plan.sha256);
      this.opts.trustChanged();
      entry.report = { name: entry.plan.name, sha256: entry.plan.sha256, state: ModelState.MODEL_STATE_TRUSTED, stage: '', reason: 'Passed', message: 'trusted by this node' };
    } else {
      entry.report = {
        name: entry.plan.name,
        sha256: entry.plan.sha256,
        state: ModelState.MODEL_STATE_REJECTED,
        stage: verdict.stage ?? '',
        reason: verdict.reason ?? '',
        message: (verdict.message ?? '').slice(0, 1024),
      };
      if (verdict.stage === Stage.Fetch) {
        entry.retryAt = Date.now() + Math.min(RETRY_MAX_MS, RETRY_INITIAL_MS * 2 ** entry.retries);
        entry.retries += 1;
      }
    }
    this.ctx?.wake();
  }

  private outcome(): DutyOutcome {
    const nextRetry = Math.min(...[...this.entries.values()].map((e) => e.retryAt ?? Infinity));
    const requeueAfterMs = Number.isFinite(nextRetry) ? Math.max(0, nextRetry - Date.now()) : undefined;
    if (this.suspended.size > 0) {
      return { status: DutyStatus.DUTY_STATUS_DRIFTED, reason: DutyReason.Drift, message: `${this.suspended.size} trusted artifact(s) suspended until re-verified`, requeueAfterMs };
    }
    const busy = [...this.entries.values()].filter((e) => e.report.state === ModelState.MODEL_STATE_SCANNING || e.report.state === ModelState.MODEL_STATE_PENDING).length;
    if (busy > 0) return { status: DutyStatus.DUTY_STATUS_PROGRESSING, reason: DutyReason.Progressing, message: `${busy} model(s) in quarantine`, requeueAfterMs };
    return { status: DutyStatus.DUTY_STATUS_OK, reason: DutyReason.Converged, message: `${this.trusted.size} trusted artifact(s) in the store as recorded`, requeueAfterMs };
  }

  /** For an evidence bundle: the manifest of every digest trusted and served now, bounded. */
  async handleCommand(command: Command): Promise<CommandResult | undefined> {
    if (command.body?.$case !== 'readTrustedManifests') return undefined;
    const manifests: { sha256: string; manifestJson: Buffer }[] = [];
    let bytes = 0;
    for (const sha256 of [...this.trusted].filter((sha) => !this.suspended.has(sha)).sort().slice(0, MAX_EVIDENCE_MANIFESTS)) {
      const manifest = await this.opts.deps.store.lookup(sha256);
      if (!manifest) continue;
      const json = Buffer.from(JSON.stringify(manifest));
      if (bytes + json.length > MAX_EVIDENCE_MANIFEST_BYTES) {
        return { id: command.id, error: `the trusted manifests exceed ${MAX_EVIDENCE_MANIFEST_BYTES} bytes`, body: undefined };
      }
      bytes += json.length;
      manifests.push({ sha256, manifestJson: json });
    }
    return { id: command.id, error: '', body: { $case: 'trustedManifests', value: { manifests } } };
  }

  async contribute(report: Report): Promise<void> {
    const shown = (e: Entry): ModelReport =>
      this.suspended.has(e.plan.sha256) && e.report.state === ModelState.MODEL_STATE_TRUSTED
        ? { ...e.report, state: ModelState.MODEL_STATE_SCANNING, reason: 'Reverifying', message: 'the trusted file changed; not served until a full hash clears it' }
        : { ...e.report };
    report.models = [...[...this.entries.values()].map(shown), ...[...this.contained.values()].map((r) => ({ ...r }))];
  }

  /** Resolves when the queued quarantines and re-verifications have run (tests). */
  idle(): Promise<void> {
    return this.queue;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.debounce);
    this.watcher?.close();
  }
}
