// ESLint rule: the import layering of STYLE.md. Shared contracts (api/) import nothing of ours;
// operator/ and agents/ share only api/; inside the operator, runtime <- controllers <- cmd, and
// controllers never import each other. Production code never imports tests or hack/.
import { dirname, relative, resolve, sep } from 'node:path';

const ROOT = resolve(new URL('../..', import.meta.url).pathname);

function area(path) {
  const parts = relative(ROOT, path).split(sep);
  if (parts[0] === 'operator' && parts[1] === 'src') {
    if (parts[2] === 'controllers') return { top: 'operator', layer: 'controllers', kind: parts[3] };
    return { top: 'operator', layer: parts[2] };
  }
  return { top: parts[0] };
}

/** Why `from` may not import `to`, or undefined when it may. */
export function layeringViolation(fromFile, toFile) {
  // Tests reach across layers on purpose: they wire real parts together.
  if (/\.test\.ts$/.test(fromFile)) return undefined;
  const from = area(fromFile);
  const to = area(toFile);
  if (from.top === to.top && from.top !== 'operator') return undefined;
  const production = ['api', 'operator', 'agents'];
  if (production.includes(from.top) && (to.top === 'test' || to.top === 'hack')) {
    return `production code (${from.top}/) must not import ${to.top}/`;
  }
  if (from.top === 'api' && to.top !== 'api') return 'api/ holds shared contracts and imports nothing else of ours';
  if (from.top === 'operator' && to.top === 'agents') return 'the operator must not import the agent (share contracts through api/)';
  if (from.top === 'agents' && to.top === 'operator') return 'the agent must not import the operator (share contracts through api/)';
  if (from.top === 'operator' && to.top === 'operator') {
    const order = ['runtime', 'controllers', 'cmd'];
    const fromRank = order.indexOf(from.layer);
    const toRank = order.indexOf(to.layer);
    if (fromRank >= 0 && toRank > fromRank) return `operator ${from.layer}/ must not import ${to.layer}/ (runtime <- controllers <- cmd)`;
    if (from.layer === 'controllers' && to.layer === 'controllers' && from.kind !== to.kind && to.kind !== undefined && from.kind !== undefined) {
      return `controllers never import each other (${from.kind} -> ${to.kind})`;
    }
  }
  return undefined;
}

export default {
  meta: { type: 'problem', docs: { description: 'enforce the import layering of STYLE.md' }, schema: [] },
  create(context) {
    function check(node, source) {
      if (!source || typeof source.value !== 'string' || !source.value.startsWith('.')) return;
      const target = resolve(dirname(context.filename), source.value);
      const why = layeringViolation(context.filename, target);
      if (why) context.report({ node: source, message: why });
    }
    return {
      ImportDeclaration: (node) => check(node, node.source),
      ExportNamedDeclaration: (node) => check(node, node.source),
      ExportAllDeclaration: (node) => check(node, node.source),
      ImportExpression: (node) => check(node, node.source),
    };
  },
};
