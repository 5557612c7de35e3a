// The agent's egress duty: turns each plan's egress part into the `inet secai` table, keeps FQDN
// answers fresh in their sets, and reports the read-back digest and the drop counters. The table
// lives in the kernel: when this process dies, enforcement stays exactly as it was.
import type { Logger } from 'pino';
import { type EgressPlan, EgressMode, type EgressReport, type EgressRule, type NodePlan, type Report } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import type { AuditSink } from '../audit/audit-sink.js';
import { applyEgressTable, harvestEgressCounters, refreshFqdnElements } from './apply-egress.js';
import { type DnsResolution, resolveThroughResolvers } from './dns-client.js';
import type { EgressMetrics } from './egress-metrics.js';
import { FqdnAnswers } from './fqdn-answers.js';
import type { NftTarget } from './nft-target.js';
import { DEFAULT_FQDN_TIMEOUTS, EgressPlanError, type FqdnTimeoutBounds, renderEgressRuleset } from './render-egress-ruleset.js';

export interface EgressEnforcerOptions {
  nft: NftTarget;
  /** TCP ports the node accepts connections on (inference, metrics). */
  inboundTcpPorts: readonly number[];
  /** Destinations allowed whatever the plan says (the operator's channel when it is TCP). */
  fixedAllow?: readonly EgressRule[];
  logger: Logger;
  metrics: EgressMetrics;
  audit?: AuditSink;
  /** Resolves a name through exactly the given resolvers (default: the UDP stub client). */
  resolve?: (name: string, resolvers: readonly string[]) => Promise<DnsResolution>;
  now?: () => number;
  fqdnTimeouts?: FqdnTimeoutBounds;
}

const RESOLVE_CONCURRENCY = 8;

export class EgressApplyError extends Error {
  override name = 'EgressApplyError';
}

export class EgressEnforcer {
  readonly name = 'egress';
  private plan: EgressPlan | undefined;
  private digest = '';
  private allowEntries = 0;
  private error = '';
  private dropped = 0;
  private audited = 0;
  private readonly answers: FqdnAnswers;
  private readonly resolve: (name: string, resolvers: readonly string[]) => Promise<DnsResolution>;
  private readonly now: () => number;
  private readonly bounds: FqdnTimeoutBounds;
  // Applies, refreshes and counter harvests run one at a time, in order.
  private queue: Promise<unknown> = Promise.resolve();
  private refreshTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly options: EgressEnforcerOptions) {
    this.bounds = options.fqdnTimeouts ?? DEFAULT_FQDN_TIMEOUTS;
    this.answers = new FqdnAnswers(this.bounds);
    this.resolve = options.resolve ?? ((name, resolvers) => resolveThroughResolvers(name, resolvers));
    this.now = options.now ?? Date.now;
  }

  /** The agent's duty entry point: throws when the plan's egress could not be enforced as intended. */
  async apply(plan: NodePlan): Promise<void> {
    const report = await this.applyEgress(plan.egress ?? emptyPlan());
    if (report.error) throw new EgressApplyError(report.error);
  }

  async contribute(report: Report): Promise<void> {
    report.egress = await this.report();
  }

  /** Replaces the table with the plan's, verifies it, then resolves the plan's names into it. */
  applyEgress(plan: EgressPlan): Promise<EgressReport> {
    return this.serialise(async () => {
      await this.harvest();
      const failure = await this.replaceTable(plan);
      if (!failure) await this.refreshNames();
      return this.snapshot();
    });
  }

  /** The latest state, with counters harvested now. */
  report(): Promise<EgressReport> {
    return this.serialise(async () => {
      await this.harvest();
      return this.snapshot();
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    await this.queue.catch(() => undefined);
  }

  private async replaceTable(plan: EgressPlan): Promise<string | undefined> {
    const log = this.options.logger.child({ duty: 'egress' });
    const hosts = hostsOf(plan);
    this.answers.retain(hosts);
    let rendered;
    try {
      rendered = renderEgressRuleset(plan, this.answers.resolved(this.now()), {
        inboundTcpPorts: this.options.inboundTcpPorts,
        fqdnTimeouts: this.bounds,
        fixedAllow: this.options.fixedAllow,
      });
    } catch (error) {
      if (!(error instanceof EgressPlanError)) throw error;
      return this.fail('render', `the egress plan cannot be rendered: ${error.message}`, log);
    }
    let applied;
    try {
      applied = await applyEgressTable(this.options.nft, rendered);
    } catch (error) {
      // A failed transaction changes nothing: the previous table stays in force.
      return this.fail('nft', `nft could not apply the egress table: ${(error as Error).message}`, log);
    }
    this.plan = plan;
    this.digest = applied.digest;
    this.allowEntries = applied.allowEntries;
    this.options.metrics.applyDuration.observe(applied.applySeconds + applied.verifySeconds);
    this.options.metrics.allowEntries.set(applied.allowEntries);
    const mode = plan.mode === EgressMode.EGRESS_MODE_AUDIT ? 'audit' : 'enforce';
    if (applied.mismatches.length > 0) {
      return this.fail('verify', `the egress table read back differs from the intent: ${applied.mismatches.join('; ')}`, log);
    }
    this.error = '';
    log.info(
      { digest: applied.digest, mode, allowEntries: applied.allowEntries, applySeconds: applied.applySeconds, verifySeconds: applied.verifySeconds },
      'egress table applied and verified',
    );
    await this.options.audit?.record({
      type: 'egress.applied',
      subject: applied.digest,
      data: { mode, allowEntries: applied.allowEntries, policies: plan.policies.join(','), applySeconds: applied.applySeconds },
    });
    return undefined;
  }

  private fail(reason: 'render' | 'nft' | 'verify', message: string, log: Logger): string {
    this.error = message;
    this.options.metrics.applyFailures.inc({ reason });
    log.error({ reason, error: message }, 'egress table not enforced as intended');
    return message;
  }

  /** Resolves the plan's names that are due or were never resolved, and renews their elements. */
  private async refreshNames(): Promise<void> {
    const plan = this.plan;
    if (!plan || this.stopped) return;
    const hosts = hostsOf(plan);
    const resolvers = (plan.dns?.queriesPerMinute ?? 0) > 0 ? (plan.dns?.resolvers ?? []) : [];
    const due = this.answers.due(hosts, this.now());
    const log = this.options.logger.child({ duty: 'egress' });
    // A few at a time: each resolution may wait for timeouts, and all share the plan's DNS rate.
    for (let start = 0; start < due.length; start += RESOLVE_CONCURRENCY) {
      await Promise.all(
        due.slice(start, start + RESOLVE_CONCURRENCY).map(async (name) => {
          const resolution = await this.resolve(name, resolvers).catch((error: Error) => ({ addresses: [], error: error.message }));
          this.answers.record(name, resolution.addresses, this.now());
          if (resolution.error) {
            this.options.metrics.fqdnRefreshFailures.inc();
            log.warn({ name, error: resolution.error }, 'FQDN entry unresolved; it allows nothing new until it resolves');
          }
        }),
      );
    }
    if (due.length > 0) {
      try {
        const hostOnly = { ...plan, allow: plan.allow.filter((rule) => rule.destination?.$case === 'host') };
        const rendered = renderEgressRuleset(hostOnly, this.answers.resolved(this.now()), { inboundTcpPorts: [], fqdnTimeouts: this.bounds });
        await refreshFqdnElements(this.options.nft, rendered.fqdnElements);
      } catch (error) {
        this.options.metrics.fqdnRefreshFailures.inc();
        log.error({ error: (error as Error).message }, 'FQDN set elements could not be renewed');
      }
    }
    this.scheduleRefresh();
  }

  private scheduleRefresh(): void {
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = undefined;
    if (!this.plan || this.stopped) return;
    const next = this.answers.nextRefreshAtMs(hostsOf(this.plan));
    if (next === undefined) return;
    this.refreshTimer = setTimeout(() => void this.serialise(() => this.refreshNames()).catch(() => undefined), Math.max(0, next - this.now()));
    this.refreshTimer.unref();
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
    return {
      // What the kernel enforces: anything but Audit renders as Enforce.
      mode: !this.plan ? EgressMode.EGRESS_MODE_UNSPECIFIED : this.plan.mode === EgressMode.EGRESS_MODE_AUDIT ? EgressMode.EGRESS_MODE_AUDIT : EgressMode.EGRESS_MODE_ENFORCE,
      rulesetDigest: this.digest,
      droppedPackets: this.dropped,
      auditedPackets: this.audited,
      allowEntries: this.allowEntries,
      error: this.error,
    };
  }

  private serialise<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => undefined);
    return next;
  }
}

function hostsOf(plan: EgressPlan): string[] {
  return plan.allow.flatMap((rule) => (rule.destination?.$case === 'host' ? [rule.destination.value] : []));
}

function emptyPlan(): EgressPlan {
  // No egress part: enforce the base alone (default deny).
  return { mode: EgressMode.EGRESS_MODE_ENFORCE, allow: [], dns: undefined, torTransPort: 0, policies: [] };
}
