// `kubectl secai`: the fleet's state and evidence for people who do not read YAML. kubectl finds
// the executable `kubectl-secai` on PATH (bin/kubectl-secai.mjs; `hack/krew/manifest.ts` writes the
// krew manifest for a release archive). It reads with the user's own kubeconfig (KUBECONFIG, or
// ~/.kube/config, or --kubeconfig) and needs only read access to the secai.io resources and Events.
//
//   kubectl secai status [-o json]     the fleet in one table
//   kubectl secai why NODE             the chain of reasons a node is not compliant or attested
//   kubectl secai evidence NODE -o F   an offline evidence bundle, collected and signed by the operator
//   kubectl secai verify F             checks a bundle with no cluster access
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { resourcePath } from '../../../api/crd/paths.js';
import type { EgressPolicy, InferenceService, Model, SecAINode, VaultPolicy } from '../../../api/gen/crd-types.js';
import { EVIDENCE_REQUEST_ANNOTATION, evidenceConfigMapName } from '../controllers/evidence/reconcile.js';
import { verifyEvidence, type EvidenceBundle } from '../evidence/bundle.js';
import { EVIDENCE_KEY_NAME } from '../evidence/evidence-key.js';
import { explainNode, renderFleetSummary, summarizeFleet, type KubeEvent } from '../plugin/fleet-summary.js';
import { CONTENT_TYPE, KubeApiError, KubeClient } from '../runtime/kube-client.js';

const USAGE = `kubectl secai: the SecAI fleet's state, for people who do not read YAML.

Usage:
  kubectl secai status [-o json]   nodes by condition and why the failing ones fail, models by phase
                                   with rejection stages, policies, services and rollouts in progress
  kubectl secai why NODE           the chain of reasons NODE is not ready, compliant, attested or
                                   verified, with the Events that led there
  kubectl secai evidence NODE -o FILE
                                   asks the operator for NODE's evidence bundle (signed audit head
                                   and consistency proof, a fresh TPM quote with its event log, plan
                                   and read-back ruleset digests, quarantine manifests), signed by
                                   the operator's evidence key; writes it to FILE and verifies it
  kubectl secai verify FILE [--operator-key PEM]
                                   verifies a bundle offline and says what each part proves

Options:
  --kubeconfig FILE                the kubeconfig to use (default: $KUBECONFIG, then ~/.kube/config)
  -n, --namespace NS               the operator's namespace (evidence; default secai-system)
  --timeout SECONDS                how long evidence waits for the operator (default 120)
  -o, --output json|FILE           machine-readable output (status), the bundle file (evidence)
  -h, --help                       this text
`;

class UsageError extends Error {}

const MAX_BUNDLE_FILE_BYTES = 4 * 1024 * 1024;

function readBundle(file: string): EvidenceBundle {
  const bytes = readFileSync(file);
  if (bytes.length > MAX_BUNDLE_FILE_BYTES) throw new UsageError(`${file} is larger than an evidence bundle can be`);
  try {
    return JSON.parse(bytes.toString('utf8')) as EvidenceBundle;
  } catch {
    throw new UsageError(`${file} is not JSON`);
  }
}

/** Prints what each part proves or why it fails; 0 only when every part holds. */
function report(bundle: EvidenceBundle, pinnedKey: string | undefined, out: (text: string) => void): number {
  const findings = verifyEvidence(bundle, pinnedKey);
  for (const f of findings) out(`${f.ok ? 'OK  ' : 'FAIL'}  ${f.part}: ${f.text}\n`);
  const failed = findings.filter((f) => !f.ok);
  out(failed.length === 0 ? 'the bundle verifies\n' : `the bundle does not verify: ${[...new Set(failed.map((f) => f.part))].join(', ')}\n`);
  return failed.length === 0 ? 0 : 1;
}

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
    options: {
      kubeconfig: { type: 'string' },
      output: { type: 'string', short: 'o' },
      namespace: { type: 'string', short: 'n' },
      timeout: { type: 'string' },
      'operator-key': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
  });
  const [command, ...rest] = positionals;
  if (values.help || command === undefined || command === 'help') {
    out(USAGE);
    return values.help || command === 'help' ? 0 : 2;
  }
  if (command === 'verify') {
    const [file, ...extra] = rest;
    if (!file || extra.length > 0) throw new UsageError('verify takes one bundle file');
    return report(readBundle(file), values['operator-key'] ? readFileSync(values['operator-key'], 'utf8') : undefined, out);
  }
  if (command !== 'evidence' && values.output !== undefined && values.output !== 'json') throw new UsageError(`-o ${values.output}: only json is supported`);
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
      case 'evidence': {
        const [name, ...extra] = rest;
        if (!name || extra.length > 0 || !values.output) throw new UsageError('evidence takes one node name and -o FILE');
        const namespace = values.namespace ?? 'secai-system';
        const timeoutMs = Number(values.timeout ?? 120) * 1000;
        const requestId = `r${randomBytes(8).toString('hex')}`;
        await client.request({
          method: 'PATCH',
          path: resourcePath('secainodes', name),
          contentType: CONTENT_TYPE.mergePatch,
          body: { metadata: { annotations: { [EVIDENCE_REQUEST_ANNOTATION]: requestId } } },
        });
        const deadline = Date.now() + timeoutMs;
        const path = `/api/v1/namespaces/${namespace}/configmaps/${evidenceConfigMapName(name)}`;
        for (;;) {
          const cm = await client.raw<{ metadata?: { annotations?: Record<string, string> }; data?: Record<string, string> }>({ method: 'GET', path });
          if (cm.status === 200 && cm.body.metadata?.annotations?.[EVIDENCE_REQUEST_ANNOTATION] === requestId) {
            const data = cm.body.data ?? {};
            if (data.error !== undefined) {
              out(`the operator could not collect evidence of ${name}: ${data.error}\n`);
              return 1;
            }
            writeFileSync(values.output, data['bundle.json'] ?? '', { mode: 0o600 });
            break;
          }
          if (Date.now() > deadline) {
            out(`the operator did not answer evidence request ${requestId} within ${timeoutMs / 1000} s (is it running and leading, and the agent connected?)\n`);
            return 1;
          }
          await new Promise((r) => setTimeout(r, 500));
        }
        const key = await client.raw<{ data?: Record<string, string> }>({ method: 'GET', path: `/api/v1/namespaces/${namespace}/configmaps/${EVIDENCE_KEY_NAME}` });
        out(`evidence of ${name} written to ${values.output}\n`);
        return report(readBundle(values.output), key.status === 200 ? key.body.data?.['public.pem'] : undefined, out);
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
