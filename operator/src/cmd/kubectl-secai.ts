// `kubectl secai`: the fleet's state and evidence for people who do not read YAML. kubectl finds
// the executable `kubectl-secai` on PATH (bin/kubectl-secai.mjs; krew manifest in
// plugins/krew/secai.yaml). It reads with the user's own kubeconfig (KUBECONFIG, or
// ~/.kube/config, or --kubeconfig) and needs only read access to the secai.io resources and Events.
//
//   kubectl secai status [-o json]     the fleet in one table
//   kubectl secai why NODE             the chain of reasons a node is not compliant or attested
import { parseArgs } from 'node:util';
import { resourcePath } from '../../../api/crd/paths.js';
import type { EgressPolicy, InferenceService, Model, SecAINode, VaultPolicy } from '../../../api/gen/crd-types.js';
import { explainNode, renderFleetSummary, summarizeFleet, type KubeEvent } from '../plugin/fleet-summary.js';
import { KubeApiError, KubeClient } from '../runtime/kube-client.js';

const USAGE = `kubectl secai: the SecAI fleet's state, for people who do not read YAML.

Usage:
  kubectl secai status [-o json]   nodes by condition and why the failing ones fail, models by phase
                                   with rejection stages, policies, services and rollouts in progress
  kubectl secai why NODE           the chain of reasons NODE is not ready, compliant, attested or
                                   verified, with the Events that led there

Options:
  --kubeconfig FILE                the kubeconfig to use (default: $KUBECONFIG, then ~/.kube/config)
  -o, --output json                machine-readable output (status)
  -h, --help                       this text
`;

class UsageError extends Error {}

async function list<T>(client: KubeClient, plural: string): Promise<T[]> {
  return (await client.request<{ items: T[] }>({ method: 'GET', path: resourcePath(plural) })).items;
}

async function clientFor(kubeconfig: string | undefined): Promise<KubeClient> {
  const file = kubeconfig ?? process.env.KUBECONFIG?.split(':').find(Boolean);
  return KubeClient.load(file ? { file } : {});
}

export async function runPlugin(argv: readonly string[], out: (text: string) => void): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    options: { kubeconfig: { type: 'string' }, output: { type: 'string', short: 'o' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
    strict: true,
  });
  const [command, ...rest] = positionals;
  if (values.help || command === undefined || command === 'help') {
    out(USAGE);
    return values.help || command === 'help' ? 0 : 2;
  }
  if (values.output !== undefined && values.output !== 'json') throw new UsageError(`-o ${values.output}: only json is supported`);
  const client = await clientFor(values.kubeconfig);
  try {
    switch (command) {
      case 'status': {
        if (rest.length > 0) throw new UsageError('status takes no arguments');
        const [nodes, models, egressPolicies, vaultPolicies, inferenceServices] = await Promise.all([
          list<SecAINode>(client, 'secainodes'),
          list<Model>(client, 'models'),
          list<EgressPolicy>(client, 'egresspolicies'),
          list<VaultPolicy>(client, 'vaultpolicies'),
          list<InferenceService>(client, 'inferenceservices'),
        ]);
        const summary = summarizeFleet({ nodes, models, egressPolicies, vaultPolicies, inferenceServices });
        out(values.output === 'json' ? `${JSON.stringify(summary, null, 2)}\n` : renderFleetSummary(summary));
        return 0;
      }
      case 'why': {
        const [name, ...extra] = rest;
        if (!name || extra.length > 0) throw new UsageError('why takes one node name');
        let node: SecAINode;
        try {
          node = await client.request<SecAINode>({ method: 'GET', path: resourcePath('secainodes', name) });
        } catch (error) {
          if (error instanceof KubeApiError && error.status === 404) {
            out(`${name} is not a fleet node (no SecAINode of that name).\n`);
            return 1;
          }
          throw error;
        }
        // Events about cluster-scoped SecAINodes live in `default` (the API server's rule).
        const events = await client.request<{ items: KubeEvent[] }>({
          method: 'GET',
          path: '/apis/events.k8s.io/v1/namespaces/default/events',
          query: { fieldSelector: `regarding.name=${name},regarding.kind=SecAINode` },
        });
        out(explainNode(node, events.items));
        return 0;
      }
      default:
        throw new UsageError(`unknown command ${command}`);
    }
  } finally {
    client.close();
  }
}

export async function main(): Promise<void> {
  try {
    process.exitCode = await runPlugin(process.argv.slice(2), (text) => process.stdout.write(text));
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`kubectl secai: ${(error as Error).message}\n\n${USAGE}`);
      process.exitCode = 2;
      return;
    }
    process.stderr.write(`kubectl secai: ${(error as Error).message}\n`);
    process.exitCode = 1;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
