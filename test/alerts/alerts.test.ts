// The chart's alert rules under promtool (Debian's prometheus package): the rule file is valid, every
// unit test in test/alerts/*.promtool.yaml passes, every alert has a test that fires it and one that
// does not, each alert's tests fail when that alert is broken, and the rules query metrics the code
// exports (with the label values the operator's fleet gauges really carry).
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { parse, stringify } from 'yaml';
import { REPO_ROOT } from '../../hack/control-plane/control-plane.js';
import { FleetMetrics } from '../../operator/src/fleet/metrics.js';
import { exportedMetricNames, familyOf, metricSelectors, type MetricSelector } from './exported-metrics.js';

const RULES = join(REPO_ROOT, 'charts/secai-fleet/files/prometheus/alerts.yaml');
const TESTS_DIR = join(REPO_ROOT, 'test/alerts');

interface Rule {
  alert: string;
  expr: string;
}
interface RuleFile {
  groups: { name: string; rules: Rule[] }[];
}
interface PromtoolTests {
  rule_files: string[];
  tests: { alert_rule_test?: { alertname: string; exp_alerts?: unknown[] }[] }[];
}

const rules = (parse(readFileSync(RULES, 'utf8')) as RuleFile).groups.flatMap((g) => g.rules);
const testFiles = readdirSync(TESTS_DIR).filter((f) => f.endsWith('.promtool.yaml')).sort();
const testCases = testFiles.flatMap((f) => (parse(readFileSync(join(TESTS_DIR, f), 'utf8')) as PromtoolTests).tests.flatMap((t) => t.alert_rule_test ?? []));

function run(command: string, args: string[], cwd = REPO_ROOT): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ code: error ? Number(error.code ?? 1) : 0, output: stdout + stderr });
    });
  });
}

it('promtool accepts the rule file and every unit test passes (test/alerts/run-promtool.sh)', async () => {
  const { code, output } = await run(join(TESTS_DIR, 'run-promtool.sh'), []);
  expect(output).toContain(`SUCCESS: ${rules.length} rules found`);
  for (const file of testFiles) expect(output).toMatch(new RegExp(`Unit Testing:\\s+test/alerts/${file.replace('.', '\\.')}\\s+SUCCESS`));
  expect(code).toBe(0);
});

it('has the alerts the fleet audit asks for', () => {
  expect(rules.map((r) => r.alert)).toEqual([
    'SecAINodesNotCompliant',
    'SecAIAgentsDisconnected',
    'SecAIAgentDown',
    'SecAIAuditLogVerificationFailed',
    'SecAIAuditLogAppendFailing',
    'SecAINodeDrift',
    'SecAITorUnavailable',
    'SecAIModelRejected',
    'SecAIEgressRolloutStopped',
    'SecAIVaultUnlockedPastIdleLimit',
    'SecAIEgressDropsHigh',
    'SecAIAttestationKeyChanged',
    'SecAINodeAttestationFailed',
  ]);
});

it.each(rules.map((r) => r.alert))('%s has a test where it fires and one where it does not', (alert) => {
  const cases = testCases.filter((c) => c.alertname === alert);
  expect(cases.some((c) => (c.exp_alerts ?? []).length > 0)).toBe(true);
  expect(cases.some((c) => (c.exp_alerts ?? []).length === 0)).toBe(true);
});

describe('each alert broken on purpose fails its tests', () => {
  let dir: string;
  beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'secai-alerts-'))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Runs every promtool test against a copy of the rules in which one alert's expression is replaced. */
  async function withExpr(alert: string, expr: string): Promise<{ code: number; output: string }> {
    const file = parse(readFileSync(RULES, 'utf8')) as RuleFile;
    for (const rule of file.groups.flatMap((g) => g.rules)) if (rule.alert === alert) rule.expr = expr;
    const mutant = join(dir, `${alert}-rules.yaml`);
    writeFileSync(mutant, stringify(file));
    const copies = testFiles.map((f) => {
      const tests = parse(readFileSync(join(TESTS_DIR, f), 'utf8')) as PromtoolTests;
      tests.rule_files = [mutant];
      const copy = join(dir, `${alert}-${f}`);
      writeFileSync(copy, stringify(tests));
      return copy;
    });
    return run('promtool', ['test', 'rules', ...copies], dir);
  }

  it.each(rules.map((r) => r.alert))('%s: never firing, and always firing', async (alert) => {
    for (const expr of ['vector(1) == 0', 'vector(1)']) {
      const { code, output } = await withExpr(alert, expr);
      expect(code).not.toBe(0);
      expect(output).toContain(`alertname: ${alert},`);
    }
  });
});

describe('the metrics the rules use', () => {
  const exported = exportedMetricNames(REPO_ROOT);
  const selectors = rules.flatMap((r) => metricSelectors(r.expr).map((s) => ({ alert: r.alert, ...s })));
  /** Labels Prometheus adds to every series of a target; the exporter never sets them. */
  const TARGET_LABELS = new Set(['job', 'namespace', 'instance', 'pod', 'node']);
  /**
   * Selectors no exporter serves yet, each named precisely in the report to the lead: the operator's
   * secai_nodes gauge counts Ready, Compliant and Attested, not yet AuditVerified (issue 7).
   */
  const AWAITED: string[] = [];
  const key = (s: MetricSelector) =>
    `${s.metric}{${Object.entries(s.equals).filter(([k]) => !TARGET_LABELS.has(k)).map(([k, v]) => `${k}="${v}"`).join(',')}}`;

  it('are all exported by the operator or the agent', () => {
    expect(selectors.length).toBeGreaterThan(rules.length);
    expect(selectors.filter((s) => familyOf(s.metric, exported) === undefined)).toEqual([]);
  });

  it('carry label values the operator fleet gauges really expose', async () => {
    const registry = new Registry();
    new FleetMetrics(registry, { secaiNodes: () => [], models: () => [], egressPolicies: () => [], vaultPolicies: () => [] });
    const exposition = await registry.metrics();
    const series = [...exposition.matchAll(/^([a-z_]+)\{([^}]*)\} /gm)].map((m) => ({
      metric: m[1]!,
      labels: Object.fromEntries([...m[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1]!, l[2]!])),
    }));
    const fleetFamilies = new Set(series.map((s) => s.metric));
    const unmatched = selectors
      .filter((s) => fleetFamilies.has(s.metric))
      .filter((s) => !series.some((x) => x.metric === s.metric && Object.entries(s.equals).every(([k, v]) => TARGET_LABELS.has(k) || x.labels[k] === v)))
      .map(key);
    // When this fails because an awaited series now exists, take it off AWAITED.
    expect([...new Set(unmatched)]).toEqual(AWAITED);
  });
});
