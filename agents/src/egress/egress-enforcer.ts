// The agent's egress duty: keeps the `inet secai` table the plan asks for in force. Each run reads
// the kernel's actual state and converges: a new plan is rendered, applied atomically and read back;
// otherwise the table is checked in place — cheaply by the ruleset generation (any change by anyone
// moves it) and fully on a slower cadence — and any difference from the intent (the table deleted,
// a chain flushed or replaced, a rule or element added or removed, another table hooking egress
// first) is drift: recorded, then repaired by re-applying the whole table in one transaction and
// reading it back. A netlink watch wakes the duty on every change, so repair is near-instant; the
// poll is the floor. FQDN answers are kept fresh in their sets. The report carries the digest of
// what was read back, and the drop counters. The table lives in the kernel: when this process dies,
// enforcement stays exactly as it was.
import type { Logger } from 'pino';
import { DutyStatus, EgressPlan, EgressMode, Via, type EgressReport, type EgressRule, type NodePlan, type Report } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { DriftKind, DutyReason } from '../../../api/proto/duty-results.js';
import type { Duty, DutyContext, DutyOutcome } from '../agent/node-agent.js';
import type { AuditSink } from '../audit/audit-sink.js';
import { applyEgressTable, harvestEgressCounters, readEgressTable, refreshFqdnElements } from './apply-egress.js';
import { type DnsResolution, resolveThroughResolvers } from './dns-client.js';
import { DynamicMembers } from './dynamic-members.js';
import type { EgressMetrics } from './egress-metrics.js';
import { type EgressDifference, egressTableDigest, findEgressDifferences } from './egress-table.js';
import { type BaseChain, describeChain, foreignEgressHooks, readBaseChains, removeChainsTransaction } from './foreign-hooks.js';
import { FqdnAnswers } from './fqdn-answers.js';
import type { NftTarget } from './nft-target.js';
import { DEFAULT_FQDN_TIMEOUTS, EgressPlanError, type FqdnTimeoutBounds, normaliseHostName, type RenderedEgressRuleset, renderEgressRuleset } from './render-egress-ruleset.js';
import { RulesetWatch, type SpawnWatcher } from './ruleset-watch.js';
import { readRulesetGeneration } from './set-element-reader.js';

export interface EgressEnforcerOptions {
  nft: NftTarget;
  /** TCP ports the node accepts connections on (inference, metrics). */
  inboundTcpPorts: readonly number[];
  /** Destinations allowed whatever the plan says (the operator's channel when it is TCP). */
  fixedAllow?: readonly EgressRule[];
  /** Base chains of other tables the node expects on egress hooks (`family/table/chain`). */
  allowForeignHooks?: readonly string[];
  logger: Logger;
  metrics: EgressMetrics;
  audit?: AuditSink;
  /** Resolves a name through exactly the given resolvers on the port (default: the UDP stub client). */
  resolve?: (name: string, resolvers: readonly string[], port: number) => Promise<DnsResolution>;
  /** The uid of the node's Tor client (renderEgressRuleset's torClientUid). */
  torClientUid?: number;
  now?: () => number;
  fqdnTimeouts?: FqdnTimeoutBounds;
  /** How often the duty checks the kernel's ruleset generation (ms). */
  resyncMs?: number;
  /** How often the table is read back in full even when the generation did not move (ms). */
  fullCheckMs?: number;
  /** Watch netlink for ruleset changes (default true when the set element reader is there). */
  watch?: boolean;
  spawnWatcher?: SpawnWatcher;
}

export const EGRESS_RESYNC_MS = 1_000;
export const EGRESS_FULL_CHECK_MS = 30_000;
const RESOLVE_CONCURRENCY = 8;
/** Our filter chains' priority (`priority filter`). */
const OUR_FILTER_PRIORITY = 0;

/** Drift kinds by severity: the drift recorded for a check is the gravest found. */
const DRIFT_ORDER: DriftKind[] = [
  DriftKind.TableMissing,
  DriftKind.ChainChanged,
  DriftKind.RuleChanged,
  DriftKind.SetElementAdded,
  DriftKind.ForeignHook,
  DriftKind.SetChanged,
  DriftKind.SetElementRemoved,
  DriftKind.ObjectChanged,
];

interface Intent {
  /** Canonical JSON of the egress plan the table was rendered from. */
  key: string;
  plan: EgressPlan;
  rendered: RenderedEgressRuleset;
}

/** Why a table could not be put in force. */
class EnforceFailure {
  constructor(
    readonly reason: DutyReason,
    readonly message: string,
  ) {}
}

export class EgressEnforcer implements Duty {
  readonly name = 'egress' as const;
  readonly resyncMs: number;
  private intent: Intent | undefined;
  /** The last outcome; a failed one makes the next run apply again. */
  private outcome: DutyOutcome | undefined;
  private digest = '';
  private allowEntries = 0;
  private dropped = 0;
  private audited = 0;
  /** The ruleset generation of the last read-back that matched the intent. */
  private verifiedGeneration: number | undefined;
  private lastFullCheckAt = 0;
  private readonly answers: FqdnAnswers;
  private readonly dynamic = new DynamicMembers();
  private readonly allowedForeign: ReadonlySet<string>;
  private readonly resolve: (name: string, resolvers: readonly string[], port: number) => Promise<DnsResolution>;
  private readonly now: () => number;
  private readonly bounds: FqdnTimeoutBounds;
  private watcher: RulesetWatch | undefined;
  private keyed: { plan: EgressPlan; key: string } | undefined;

  constructor(private readonly options: EgressEnforcerOptions) {
    this.bounds = options.fqdnTimeouts ?? DEFAULT_FQDN_TIMEOUTS;
    this.answers = new FqdnAnswers(this.bounds);
    this.resolve = options.resolve ?? ((name, resolvers, port) => resolveThroughResolvers(name, resolvers, { port }));
    this.now = options.now ?? Date.now;
    this.resyncMs = options.resyncMs ?? EGRESS_RESYNC_MS;
    this.allowedForeign = new Set(options.allowForeignHooks ?? []);
  }

  /** Starts the netlink watch that wakes the duty on every ruleset change. */
  watch(ctx: Pick<DutyContext, 'wake'>): Promise<void> {
    const reader = this.options.nft.setElementReader;
    if (this.watcher) return this.watcher.ready;
    if (reader === undefined || this.options.watch === false) return Promise.resolve();
    this.watcher = new RulesetWatch({ target: this.options.nft, reader, onChange: () => ctx.wake(), logger: this.options.logger, spawn: this.options.spawnWatcher });
    this.watcher.start();
    return this.watcher.ready;
  }

  async stop(): Promise<void> {
    this.watcher?.stop();
  }

  async contribute(report: Report): Promise<void> {
    report.egress = await this.report();
  }

  /** Converges the kernel on the plan's egress part; see the file comment. */
  async converge(plan: NodePlan, ctx: DutyContext): Promise<DutyOutcome> {
    const egress = plan.egress ?? emptyPlan();
    // The agent hands the same plan object to every resync: its key is computed once per plan.
    if (egress !== this.keyed?.plan) this.keyed = { plan: egress, key: JSON.stringify(EgressPlan.toJSON(egress)) };
    const key = this.keyed.key;
    let outcome: DutyOutcome;
    if (this.intent?.key !== key || this.outcome?.status === DutyStatus.DUTY_STATUS_FAILED) {
      outcome = await this.enforce(egress, key);
    } else {
      await this.refreshNames();
      outcome = await this.checkInForce(ctx);
    }
    this.outcome = outcome;
    return { ...outcome, requeueAfterMs: this.nextRefreshInMs() };
  }

  /** The latest state, with counters harvested now. */
  async report(): Promise<EgressReport> {
    await this.harvest();
    return this.snapshot();
  }

  /** Renders the plan, replaces the table, reads it back, then resolves the plan's names into it. */
  private async enforce(plan: EgressPlan, key: string): Promise<DutyOutcome> {
    const log = this.options.logger.child({ duty: 'egress' });
    await this.harvest();
    const hosts = hostsOf(plan);
    this.answers.retain(hosts);
    let rendered: RenderedEgressRuleset;
    try {
      rendered = this.render(plan);
    } catch (error) {
      if (!(error instanceof EgressPlanError)) throw error;
      return this.failed(new EnforceFailure(DutyReason.RenderFailed, `the egress plan cannot be rendered: ${error.message}`), 'render', log);
    }
    const result = await this.putInForce(rendered);
    if (result instanceof EnforceFailure) return this.failed(result, result.reason === DutyReason.NftFailed ? 'nft' : 'verify', log);
    this.intent = { key, plan, rendered };
    const mode = plan.mode === EgressMode.EGRESS_MODE_AUDIT ? 'audit' : 'enforce';
    log.info({ digest: this.digest, mode, allowEntries: this.allowEntries }, 'egress table applied and verified');
    await this.options.audit?.record({
      type: 'egress.applied',
      subject: this.digest,
      data: { mode, allowEntries: this.allowEntries, policies: plan.policies.join(',') },
    });
    await this.refreshNames();
    return this.converged('the egress table is in force and was read back as intended');
  }

  /**
   * Replaces the table with `rendered` in one transaction, removes foreign hooks that run before
   * ours, and reads both back. A failed transaction changes nothing: the previous table stays.
   */
  private async putInForce(rendered: RenderedEgressRuleset): Promise<true | EnforceFailure> {
    // Read after the transaction and before the read-back: a change made after this read moves the
    // generation again, and one made before it shows in the read-back.
    let generation: number | undefined;
    let applied;
    try {
      const foreign = await this.foreignHooks();
      applied = await applyEgressTable(this.options.nft, rendered, {
        alsoInTransaction: foreign.length > 0 ? removeChainsTransaction(foreign) : undefined,
        beforeReadBack: async () => (generation = await this.generation()),
      });
    } catch (error) {
      return new EnforceFailure(DutyReason.NftFailed, `nft could not apply the egress table: ${(error as Error).message}`);
    }
    this.dynamic.reset();
    this.dynamic.record(rendered.fqdnElements, this.now());
    this.options.metrics.applyDuration.observe(applied.applySeconds + applied.verifySeconds);
    this.options.metrics.allowEntries.set(applied.allowEntries);
    this.allowEntries = applied.allowEntries;
    if (applied.mismatches.length > 0 || !applied.digest) {
      this.digest = applied.digest;
      const reason = applied.digest ? DutyReason.ReadBackMismatch : DutyReason.ReadBackFailed;
      return new EnforceFailure(reason, `the egress table read back differs from the intent: ${applied.mismatches.join('; ')}`);
    }
    const leftover = await this.foreignHooks();
    if (leftover.length > 0) return new EnforceFailure(DutyReason.ReadBackMismatch, `foreign egress hooks remain: ${leftover.map(describeChain).join('; ')}`);
    this.digest = applied.digest;
    this.verifiedGeneration = generation;
    this.lastFullCheckAt = this.now();
    return true;
  }

  /**
   * Reads the table (and other tables' egress hooks) back and compares them with the intent; a
   * difference is drift, recorded and then repaired. Skipped when the ruleset generation has not
   * moved since the last matching read-back and a full check is not due.
   */
  private async checkInForce(ctx: DutyContext): Promise<DutyOutcome> {
    const intent = this.intent!;
    const generation = await this.generation();
    const fullDue = this.now() - this.lastFullCheckAt >= (this.options.fullCheckMs ?? EGRESS_FULL_CHECK_MS);
    if (generation !== undefined && generation === this.verifiedGeneration && !fullDue && this.outcome) return this.outcome;
    const log = this.options.logger.child({ duty: 'egress' });
    let listing;
    let foreign: BaseChain[];
    try {
      [listing, foreign] = await Promise.all([readEgressTable(this.options.nft, intent.rendered.intent), this.foreignHooks()]);
    } catch (error) {
      return this.failed(new EnforceFailure(DutyReason.ReadBackFailed, `the egress table could not be read back: ${(error as Error).message}`), 'verify', log);
    }
    const now = this.now();
    this.dynamic.prune(now);
    const differences: (EgressDifference | { kind: DriftKind; text: string })[] = listing.tablePresent
      ? findEgressDifferences(intent.rendered.intent, listing.table, { dynamicMemberAllowed: (set, key) => this.dynamic.allows(set, key, now) })
      : [{ kind: DriftKind.TableMissing, text: 'the inet secai table is gone' }];
    for (const chain of foreign) differences.push({ kind: DriftKind.ForeignHook, text: `${describeChain(chain)} runs before ours` });
    if (differences.length === 0) {
      this.digest = egressTableDigest(listing.table);
      this.verifiedGeneration = generation;
      this.lastFullCheckAt = now;
      return this.converged('the egress table read back from the kernel is the one intended');
    }
    const kind = DRIFT_ORDER.find((k) => differences.some((d) => d.kind === k)) ?? DriftKind.ObjectChanged;
    const detail = differences.map((d) => d.text).join('; ');
    await ctx.drift(kind, detail);
    log.warn({ kind, differences: differences.length }, 'egress drift: re-applying the table');
    // The repair renders again from the plan and the live answers: everything we put there, no more.
    let rendered: RenderedEgressRuleset;
    try {
      rendered = this.render(intent.plan);
    } catch (error) {
      return this.failed(new EnforceFailure(DutyReason.RepairFailed, `the egress plan cannot be rendered: ${(error as Error).message}`), 'render', log);
    }
    const repaired = await this.putInForce(rendered);
    if (repaired instanceof EnforceFailure) return this.failed(new EnforceFailure(DutyReason.RepairFailed, `drift (${kind}) not repaired: ${repaired.message}`), 'repair', log);
    this.intent = { ...intent, rendered };
    await this.options.audit?.record({ type: 'egress.repaired', subject: this.digest, data: { kind, differences: differences.length } });
    return this.converged(`drift (${kind}) repaired; the table read back is the one intended`);
  }

  private render(plan: EgressPlan): RenderedEgressRuleset {
    return renderEgressRuleset(plan, this.answers.resolved(this.now()), {
      inboundTcpPorts: this.options.inboundTcpPorts,
      fqdnTimeouts: this.bounds,
      fixedAllow: this.options.fixedAllow,
      torClientUid: this.options.torClientUid,
    });
  }

  private async generation(): Promise<number | undefined> {
    const reader = this.options.nft.setElementReader;
    if (reader === undefined) return undefined;
    return readRulesetGeneration(this.options.nft, reader).catch(() => undefined);
  }

  private async foreignHooks(): Promise<BaseChain[]> {
    return foreignEgressHooks(await readBaseChains(this.options.nft), OUR_FILTER_PRIORITY, this.allowedForeign);
  }

  private converged(message: string): DutyOutcome {
    return { status: DutyStatus.DUTY_STATUS_OK, reason: DutyReason.Converged, message, readBackDigest: this.digest };
  }

  private failed(failure: EnforceFailure, metric: 'render' | 'nft' | 'verify' | 'repair', log: Logger): DutyOutcome {
    this.options.metrics.applyFailures.inc({ reason: metric });
    log.error({ reason: failure.reason, error: failure.message }, 'egress table not enforced as intended');
    return { status: DutyStatus.DUTY_STATUS_FAILED, reason: failure.reason, message: failure.message, readBackDigest: this.digest };
  }

  /** Resolves the plan's names that are due or were never resolved, and renews their elements. */
  private async refreshNames(): Promise<void> {
    const plan = this.intent?.plan;
    if (!plan) return;
    const hosts = hostsOf(plan);
    const resolvers = (plan.dns?.queriesPerMinute ?? 0) > 0 ? (plan.dns?.resolvers ?? []) : [];
    // Names reached through Tor are resolved by the Tor client (its DNSPort on loopback), never
    // by a resolver: a query in clear would say where the node is going. No DNSPort, no answer.
    const torHosts = new Set(
      plan.allow.flatMap((rule) => (rule.via === Via.VIA_TOR && rule.destination?.$case === 'host' ? [normaliseHostName(rule.destination.value)] : [])),
    );
    const resolverFor = (name: string): [readonly string[], number] =>
      torHosts.has(normaliseHostName(name)) ? (plan.torDnsPort > 0 ? [['127.0.0.1'], plan.torDnsPort] : [[], 53]) : [resolvers, 53];
    const due = this.answers.due(hosts, this.now());
    if (due.length === 0) return;
    const log = this.options.logger.child({ duty: 'egress' });
    // A few at a time: each resolution may wait for timeouts, and all share the plan's DNS rate.
    for (let start = 0; start < due.length; start += RESOLVE_CONCURRENCY) {
      await Promise.all(
        due.slice(start, start + RESOLVE_CONCURRENCY).map(async (name) => {
          const [through, port] = resolverFor(name);
          const resolution = await this.resolve(name, through, port).catch((error: Error) => ({ addresses: [], error: error.message }));
          this.answers.record(name, resolution.addresses, this.now());
          if (resolution.error) {
            this.options.metrics.fqdnRefreshFailures.inc();
            log.warn({ name, error: resolution.error }, 'FQDN entry unresolved; it allows nothing new until it resolves');
          }
        }),
      );
    }
    try {
      const hostOnly = { ...plan, allow: plan.allow.filter((rule) => rule.destination?.$case === 'host') };
      const rendered = renderEgressRuleset(hostOnly, this.answers.resolved(this.now()), { inboundTcpPorts: [], fqdnTimeouts: this.bounds });
      // Recorded first: the write wakes the drift check, which must know these members are ours.
      this.dynamic.record(rendered.fqdnElements, this.now());
      await refreshFqdnElements(this.options.nft, rendered.fqdnElements);
    } catch (error) {
      this.options.metrics.fqdnRefreshFailures.inc();
      log.error({ error: (error as Error).message }, 'FQDN set elements could not be renewed');
    }
  }

  private nextRefreshInMs(): number | undefined {
    if (!this.intent) return undefined;
    const next = this.answers.nextRefreshAtMs(hostsOf(this.intent.plan));
    return next === undefined ? undefined : Math.max(0, next - this.now());
  }

  private async harvest(): Promise<void> {
    const harvested = await harvestEgressCounters(this.options.nft).catch((error: Error) => {
      this.options.logger.warn({ duty: 'egress', error: error.message }, 'egress counters could not be read');
      return undefined;
    });
    if (!harvested) return;
    const dropped = harvested.dropped.packets + harvested.dnsDropped.packets;
    const audited = harvested.audited.packets;
    this.dropped += dropped;
    this.audited += audited;
    this.options.metrics.droppedPackets.inc(dropped);
    this.options.metrics.auditedPackets.inc(audited);
    // Drops are summarised per harvest (each report), never one entry per packet.
    if (dropped > 0 || audited > 0) {
      await this.options.audit?.record({
        type: 'egress.drops',
        data: { dropped, dnsDropped: harvested.dnsDropped.packets, audited, inboundDropped: harvested.inboundDropped.packets },
      });
    }
  }

  private snapshot(): EgressReport {
    const plan = this.intent?.plan;
    return {
      // What the kernel enforces: anything but Audit renders as Enforce.
      mode: !plan ? EgressMode.EGRESS_MODE_UNSPECIFIED : plan.mode === EgressMode.EGRESS_MODE_AUDIT ? EgressMode.EGRESS_MODE_AUDIT : EgressMode.EGRESS_MODE_ENFORCE,
      rulesetDigest: this.digest,
      droppedPackets: this.dropped,
      auditedPackets: this.audited,
      allowEntries: this.allowEntries,
    };
  }
}

function hostsOf(plan: EgressPlan): string[] {
  return plan.allow.flatMap((rule) => (rule.destination?.$case === 'host' ? [rule.destination.value] : []));
}

function emptyPlan(): EgressPlan {
  // No egress part: enforce the base alone (default deny).
  return { mode: EgressMode.EGRESS_MODE_ENFORCE, allow: [], dns: undefined, torTransPort: 0, torDnsPort: 0, policies: [] };
}
