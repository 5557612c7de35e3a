// A list-watch informer in the manner of client-go's reflector: list once, then watch from the
// list's resourceVersion with bookmarks; resume from the last seen resourceVersion at once after a
// watch that ran its course, and after an error or a premature close with jittered exponential
// backoff; relist on 410 Gone; restart a watch that has gone
// silent (watchdog, against half-open connections); replay every object to the handlers periodically
// (resync). The cache is kept with optional secondary indexes. It never stops on its own.
import { StringDecoder } from 'node:string_decoder';
import type { V1ObjectMeta } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { sleep, systemClock, type Clock, type Timer } from './clock.js';
import { KubeApiError, type KubeClient, type KubeStatus } from './kube-client.js';

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: V1ObjectMeta;
}

export interface InformerHandler<T> {
  onAdd?(obj: T): void;
  onUpdate?(oldObj: T, newObj: T): void;
  onDelete?(obj: T): void;
}

export interface InformerOptions<T extends KubeObject> {
  client: KubeClient;
  /** The collection to list and watch, for example `/api/v1/nodes`. */
  path: string;
  logger: Logger;
  labelSelector?: string;
  fieldSelector?: string;
  /** Applied to every object before it enters the cache (to drop fields the operator must not keep). */
  transform?: (obj: T) => T;
  clock?: Clock;
  random?: () => number;
  /** Replay every cached object as an update this often; 0 disables (default 10 h, as controller-runtime). */
  resyncPeriodMs?: number;
  /** The server ends each watch after a random time in this range (client-go's reflector: 5–10 min). */
  watchTimeoutSeconds?: { min: number; max: number };
  backoff?: { initialMs: number; maxMs: number };
  /** A watch that delivers no byte (event or bookmark) for this long is restarted (default 5 min). */
  watchdogMs?: number;
  /** Items per list page. */
  pageSize?: number;
}

/** 410 Gone: the resourceVersion is older than what the server still holds; only a relist helps. */
class ResourceExpired extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ResourceExpired';
  }
}

interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T | KubeStatus;
}

interface ObjectList<T> {
  kind?: string;
  apiVersion?: string;
  metadata: { resourceVersion?: string; continue?: string };
  items: T[];
}

/** One watch event line; an API object is at most ~1.5 MiB in etcd, so this leaves ample room. */
const MAX_EVENT_BYTES = 16 * 1024 * 1024;
/** A watch that delivered events or ran this long counts as healthy and resets the backoff. */
const HEALTHY_WATCH_MS = 10_000;

export function objectKey(obj: KubeObject): string {
  const { namespace, name } = obj.metadata;
  return namespace ? `${namespace}/${name}` : (name ?? '');
}

export interface InformerStats {
  lists: number;
  watches: number;
  /** Relists forced by 410 Gone. */
  expired: number;
  errors: number;
  watchdogRestarts: number;
}

export class Informer<T extends KubeObject> {
  private readonly opts: InformerOptions<T>;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly log: Logger;
  private readonly cache = new Map<string, T>();
  private readonly indexers = new Map<string, (obj: T) => string[]>();
  private readonly indices = new Map<string, Map<string, Set<string>>>();
  private readonly handlers: InformerHandler<T>[] = [];
  private resourceVersion = '';
  private synced = false;
  private syncWaiters: (() => void)[] = [];
  private stopController = new AbortController();
  private loop?: Promise<void>;
  private resyncTimer?: Timer;
  readonly stats: InformerStats = { lists: 0, watches: 0, expired: 0, errors: 0, watchdogRestarts: 0 };

  constructor(opts: InformerOptions<T>) {
    this.opts = opts;
    this.clock = opts.clock ?? systemClock;
    this.random = opts.random ?? Math.random;
    this.log = opts.logger.child({ informer: opts.path, ...(opts.labelSelector ? { selector: opts.labelSelector } : {}) });
  }

  /** Adds a secondary index: `fn` gives the index values of an object. */
  addIndex(name: string, fn: (obj: T) => string[]): this {
    this.indexers.set(name, fn);
    const index = new Map<string, Set<string>>();
    this.indices.set(name, index);
    for (const [key, obj] of this.cache) for (const v of fn(obj)) this.indexAdd(index, v, key);
    return this;
  }

  /** Registers handlers; once synced, a late handler first gets an add for every cached object. */
  addHandler(handler: InformerHandler<T>): this {
    this.handlers.push(handler);
    if (this.synced) for (const obj of this.cache.values()) this.call(() => handler.onAdd?.(obj));
    return this;
  }

  start(): this {
    if (this.loop) return this;
    this.loop = this.run();
    this.scheduleResync();
    return this;
  }

  async stop(): Promise<void> {
    this.stopController.abort();
    this.resyncTimer?.cancel();
    await this.loop;
    for (const resolve of this.syncWaiters.splice(0)) resolve();
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  list(): T[] {
    return [...this.cache.values()];
  }

  keys(): string[] {
    return [...this.cache.keys()];
  }

  byIndex(index: string, value: string): T[] {
    const keys = this.indices.get(index)?.get(value);
    if (!keys) return [];
    return [...keys].map((k) => this.cache.get(k)).filter((o): o is T => o !== undefined);
  }

  hasSynced(): boolean {
    return this.synced;
  }

  /** Resolves once the first list is in the cache; rejects after `timeoutMs`. */
  async waitForSync(timeoutMs: number): Promise<void> {
    if (this.synced) return;
    let timer: Timer | undefined;
    try {
      await Promise.race([
        new Promise<void>((resolve) => this.syncWaiters.push(resolve)),
        new Promise<never>((_, reject) => {
          timer = this.clock.setTimer(() => reject(new Error(`informer ${this.opts.path} not synced after ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } finally {
      timer?.cancel();
    }
  }

  private get stopping(): boolean {
    return this.stopController.signal.aborted;
  }

  private async run(): Promise<void> {
    const { initialMs, maxMs } = this.opts.backoff ?? { initialMs: 1000, maxMs: 30_000 };
    let backoffMs = initialMs;
    let needList = true;
    while (!this.stopping) {
      let healthy = false;
      try {
        if (needList) {
          await this.relist();
          needList = false;
        }
        healthy = await this.watchOnce();
      } catch (err) {
        if (this.stopping) break;
        if (err instanceof ResourceExpired) {
          this.stats.expired++;
          this.log.info({ resourceVersion: this.resourceVersion, reason: err.message }, 'resource version expired; relisting');
          needList = true;
          healthy = true;
        } else {
          this.stats.errors++;
          this.log.warn({ err: errorSummary(err), retryInMs: backoffMs }, 'list/watch failed; retrying');
        }
      }
      if (this.stopping) break;
      if (healthy) {
        // A watch that ran its course (the server ends each after timeoutSeconds) resumes at once,
        // as client-go's reflector does: a pause here delays every change made meanwhile.
        backoffMs = initialMs;
        continue;
      }
      // Full jitter on half the delay, so that many informers reconnecting at once spread out.
      await sleep(this.clock, backoffMs * (0.5 + this.random() * 0.5), this.stopController.signal);
      backoffMs = Math.min(maxMs, backoffMs * 2);
    }
  }

  private selectorQuery() {
    return { labelSelector: this.opts.labelSelector, fieldSelector: this.opts.fieldSelector };
  }

  /** Lists every page, then brings the cache and the handlers in line with what the server holds. */
  private async relist(): Promise<void> {
    this.stats.lists++;
    const fresh = new Map<string, T>();
    let continueToken: string | undefined;
    let listVersion = '';
    do {
      let page: ObjectList<T>;
      try {
        page = await this.opts.client.request<ObjectList<T>>({
          method: 'GET',
          path: this.opts.path,
          query: { ...this.selectorQuery(), limit: this.opts.pageSize ?? 500, continue: continueToken },
          signal: this.stopController.signal,
        });
      } catch (err) {
        // An expired continue token: start the list over.
        if (err instanceof KubeApiError && err.status === 410) throw new ResourceExpired(err.message);
        throw err;
      }
      const kind = page.kind?.replace(/List$/, '');
      for (const item of page.items ?? []) {
        const obj = this.prepare({ ...item, apiVersion: item.apiVersion ?? page.apiVersion, kind: item.kind ?? kind });
        fresh.set(objectKey(obj), obj);
      }
      continueToken = page.metadata.continue || undefined;
      listVersion = page.metadata.resourceVersion ?? listVersion;
    } while (continueToken);

    for (const [key, obj] of fresh) {
      const old = this.cache.get(key);
      this.store(key, obj);
      if (!old) this.dispatch((h) => h.onAdd?.(obj));
      else if (old.metadata.resourceVersion !== obj.metadata.resourceVersion) this.dispatch((h) => h.onUpdate?.(old, obj));
    }
    // Deleted while we were not watching: the handlers get the last state we knew.
    for (const [key, old] of [...this.cache]) {
      if (fresh.has(key)) continue;
      this.remove(key);
      this.dispatch((h) => h.onDelete?.(old));
    }
    this.resourceVersion = listVersion;
    if (!this.synced) {
      this.synced = true;
      for (const resolve of this.syncWaiters.splice(0)) resolve();
    }
  }

  /** One watch request; returns whether it was healthy when it ended cleanly. */
  private async watchOnce(): Promise<boolean> {
    this.stats.watches++;
    const started = this.clock.now();
    const { min, max } = this.opts.watchTimeoutSeconds ?? { min: 300, max: 600 };
    const timeoutSeconds = Math.floor(min + this.random() * (max - min + 1));
    const abort = new AbortController();
    const onStop = () => abort.abort();
    this.stopController.signal.addEventListener('abort', onStop, { once: true });
    const watchdogMs = this.opts.watchdogMs ?? 5 * 60_000;
    let watchdog: Timer | undefined;
    let watchdogFired = false;
    const feedWatchdog = () => {
      watchdog?.cancel();
      watchdog = this.clock.setTimer(() => {
        watchdogFired = true;
        abort.abort();
      }, watchdogMs);
    };
    let events = 0;
    try {
      feedWatchdog();
      const res = await this.opts.client.stream({
        path: this.opts.path,
        query: {
          ...this.selectorQuery(),
          watch: 1,
          allowWatchBookmarks: true,
          resourceVersion: this.resourceVersion,
          timeoutSeconds,
        },
        signal: abort.signal,
      });
      if (res.statusCode !== 200) {
        const body = await readBounded(res, 64 * 1024);
        let status: KubeStatus = { message: body };
        try {
          status = JSON.parse(body) as KubeStatus;
        } catch {
          // Not a Status object; keep the text.
        }
        if (res.statusCode === 410) throw new ResourceExpired(status.message ?? 'Gone');
        throw new KubeApiError(res.statusCode ?? 0, status, 'WATCH', this.opts.path);
      }
      const decoder = new StringDecoder('utf8');
      let pending = '';
      for await (const chunk of res as AsyncIterable<Buffer>) {
        feedWatchdog();
        pending += decoder.write(chunk);
        let newline: number;
        while ((newline = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, newline);
          pending = pending.slice(newline + 1);
          if (line.trim().length === 0) continue;
          this.handleEvent(JSON.parse(line) as WatchEvent<T>);
          events++;
        }
        if (pending.length > MAX_EVENT_BYTES) throw new Error(`watch event exceeds ${MAX_EVENT_BYTES} bytes`);
      }
      return events > 0 || this.clock.now() - started >= HEALTHY_WATCH_MS;
    } catch (err) {
      if (watchdogFired && !this.stopping) {
        this.stats.watchdogRestarts++;
        this.log.info({ watchdogMs }, 'watch silent for too long; restarting it');
        return true;
      }
      throw err;
    } finally {
      watchdog?.cancel();
      this.stopController.signal.removeEventListener('abort', onStop);
      abort.abort();
    }
  }

  private handleEvent(event: WatchEvent<T>): void {
    if (event.type === 'ERROR') {
      const status = event.object as KubeStatus;
      if (status.code === 410) throw new ResourceExpired(status.message ?? 'Gone');
      throw new KubeApiError(status.code ?? 0, status, 'WATCH', this.opts.path);
    }
    const raw = event.object as T;
    if (event.type === 'BOOKMARK') {
      this.resourceVersion = raw.metadata.resourceVersion ?? this.resourceVersion;
      return;
    }
    const obj = this.prepare(raw);
    const key = objectKey(obj);
    const old = this.cache.get(key);
    if (event.type === 'DELETED') {
      this.remove(key);
      this.dispatch((h) => h.onDelete?.(obj));
    } else {
      this.store(key, obj);
      if (old) this.dispatch((h) => h.onUpdate?.(old, obj));
      else this.dispatch((h) => h.onAdd?.(obj));
    }
    this.resourceVersion = obj.metadata.resourceVersion ?? this.resourceVersion;
  }

  private prepare(obj: T): T {
    return this.opts.transform ? this.opts.transform(obj) : obj;
  }

  private store(key: string, obj: T): void {
    const old = this.cache.get(key);
    if (old) this.unindex(key, old);
    this.cache.set(key, obj);
    for (const [name, fn] of this.indexers) {
      const index = this.indices.get(name);
      if (index) for (const v of fn(obj)) this.indexAdd(index, v, key);
    }
  }

  private remove(key: string): void {
    const old = this.cache.get(key);
    if (old) this.unindex(key, old);
    this.cache.delete(key);
  }

  private unindex(key: string, obj: T): void {
    for (const [name, fn] of this.indexers) {
      const index = this.indices.get(name);
      if (!index) continue;
      for (const v of fn(obj)) {
        const keys = index.get(v);
        keys?.delete(key);
        if (keys?.size === 0) index.delete(v);
      }
    }
  }

  private indexAdd(index: Map<string, Set<string>>, value: string, key: string): void {
    let keys = index.get(value);
    if (!keys) index.set(value, (keys = new Set()));
    keys.add(key);
  }

  private dispatch(fn: (h: InformerHandler<T>) => void): void {
    for (const h of this.handlers) this.call(() => fn(h));
  }

  private call(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.error({ err }, 'informer handler threw');
    }
  }

  private scheduleResync(): void {
    const period = this.opts.resyncPeriodMs ?? 10 * 60 * 60 * 1000;
    if (period <= 0) return;
    this.resyncTimer = this.clock.setTimer(() => {
      if (this.stopping) return;
      if (this.synced) for (const obj of this.cache.values()) this.dispatch((h) => h.onUpdate?.(obj, obj));
      this.scheduleResync();
    }, period);
  }
}

function errorSummary(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function readBounded(stream: AsyncIterable<Buffer>, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += chunk.length;
    if (size > limit) break;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}
