// Which metrics the operator and the agent export (read from their sources), and which metrics and
// label matchers a PromQL expression uses, so that alerts and the dashboard are checked against the
// metrics that exist rather than the ones someone remembers.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Our metric families: `secai_` and the controller-runtime names the operator keeps. */
const OURS = /^(secai_|controller_runtime_|workqueue_|leader_election_|rest_client_)/;
const NAME_LITERAL = /['"]((?:secai|controller_runtime|workqueue|leader_election|rest_client)_[a-z0-9_]+)['"]/g;
const HISTOGRAM_SERIES = /_(bucket|sum|count)$/;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.test.ts'))
    .map((e) => join(e.parentPath, e.name));
}

/** Every metric name literal in the operator's and the agent's production sources. */
export function exportedMetricNames(root: string): Set<string> {
  const names = new Set<string>();
  for (const file of [...sourceFiles(join(root, 'operator/src')), ...sourceFiles(join(root, 'agents/src'))]) {
    for (const match of readFileSync(file, 'utf8').matchAll(NAME_LITERAL)) names.add(match[1]!);
  }
  return names;
}

export interface MetricSelector {
  metric: string;
  /** Equality matchers only (`label="value"`). */
  equals: Record<string, string>;
}

/** The metric selectors of our families in a PromQL expression (label names inside `by (…)` are not metrics). */
export function metricSelectors(expr: string): MetricSelector[] {
  const withoutStrings = expr.replace(/"[^"]*"/g, (s) => s.replace(/[a-z_]/g, 'x'));
  const selectors: MetricSelector[] = [];
  for (const match of withoutStrings.matchAll(/\b([a-z_:][a-z0-9_:]*)\b(\s*\{)?/g)) {
    const metric = match[1]!;
    if (!OURS.test(metric)) continue;
    const equals: Record<string, string> = {};
    if (match[2]) {
      const open = match.index + match[0].length;
      const body = expr.slice(open, expr.indexOf('}', open));
      for (const m of body.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"([^"]*)"/g)) equals[m[1]!] = m[2]!;
    }
    selectors.push({ metric, equals });
  }
  return selectors;
}

/** The exported family a series name belongs to (`x_bucket` of histogram `x` is `x`), or undefined. */
export function familyOf(series: string, exported: Set<string>): string | undefined {
  if (exported.has(series)) return series;
  const base = series.replace(HISTOGRAM_SERIES, '');
  return base !== series && exported.has(base) ? base : undefined;
}
