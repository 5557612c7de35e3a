// The chart, rendered offline by the helm hack/ builds (Kubernetes 1.36.3): lint, security contexts,
// RBAC equal to operator/config/rbac.yaml, the agent's identity wiring checked against the agent's and
// the relay's own argument parsers, CRDs equal to crds/, monitoring objects, the dashboard, and a
// values schema that rejects what it must.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { TOKEN_AUDIENCE } from '../../api/proto/protocol.js';
import { parseAgentConfig } from '../../agents/src/cmd/agent-config.js';
import { parseTokenRelayConfig } from '../../agents/src/cmd/token-relay.js';
import { REPO_ROOT } from '../../hack/control-plane/control-plane.js';
import { OPERATOR_BUNDLE, OPERATOR_NODE_FLAGS } from '../../operator/build.js';
import { DEFAULT_FLEET_SELECTOR, NOT_COMPLIANT_TAINT } from '../../operator/src/fleet/names.js';
import { exportedMetricNames, familyOf, metricSelectors } from '../alerts/exported-metrics.js';
import { chartCrdTemplates } from './chart-crd-templates.js';
import { CHART, find, Helm, KUBE_VERSION, type KubeDoc } from './helm.js';

interface Container {
  name: string;
  command?: string[];
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  ports?: { name: string; containerPort: number }[];
  securityContext?: Record<string, unknown> & { capabilities?: { drop?: string[]; add?: string[] } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  livenessProbe?: { httpGet?: { path: string; port: string } };
  readinessProbe?: { httpGet?: { path: string; port: string } };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean; mountPropagation?: string }[];
}
interface Volume {
  name: string;
  hostPath?: { path: string; type?: string };
  configMap?: { name: string; optional?: boolean };
  projected?: { sources: { serviceAccountToken?: { audience: string; expirationSeconds: number; path: string } }[] };
  emptyDir?: object;
}
interface PodSpec {
  serviceAccountName: string;
  automountServiceAccountToken?: boolean;
  hostNetwork?: boolean;
  hostPID?: boolean;
  securityContext?: Record<string, unknown>;
  nodeSelector?: Record<string, string>;
  tolerations?: { key: string; operator: string; effect: string }[];
  containers: Container[];
  volumes?: Volume[];
}
const podSpec = (doc: KubeDoc) => (doc.spec as { template: { spec: PodSpec } }).template.spec;

const helm = Helm.create();
afterAll(() => helm.dispose());

/** `--flag=value` arguments as pairs, in order. */
const flags = (args: string[] = []) => args.map((a) => /^--([^=]+)=(.*)$/.exec(a)!).map((m) => [m[1]!, m[2]!] as const);
const flagValues = (args: string[] | undefined, name: string) => flags(args).filter(([k]) => k === name).map(([, v]) => v);
const envOf = (c: Container, fieldValues: Record<string, string>) =>
  Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? fieldValues[e.valueFrom?.fieldRef?.fieldPath ?? ''] ?? '']));
const volumeOf = (spec: PodSpec, name: string) => spec.volumes?.find((v) => v.name === name);
/** The volume mounted at the directory holding `path`. */
const volumeHolding = (spec: PodSpec, c: Container, path: string) => {
  const mount = c.volumeMounts?.find((m) => path.startsWith(`${m.mountPath}/`));
  return mount && { mount, volume: volumeOf(spec, mount.name)! };
};

describe('helm lint', () => {
  it.each([
    ['the defaults', undefined],
    ['host mode', { agent: { mode: 'host' } }],
    ['an unprivileged agent with always-allowed endpoints', { agent: { privileged: false, alwaysAllow: ['10.42.0.0/16:9443', '192.0.2.10:6443'], inboundPorts: [10250] } }],
    ['monitoring forced on', { monitoring: { enabled: true } }],
  ])('passes with %s (--strict)', async (_, values) => {
    const result = await helm.run(['lint', CHART, '--strict', '--kube-version', KUBE_VERSION, ...helm.valuesArgs(values)]);
    expect(result.stderr + result.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
    expect(result.code).toBe(0);
  });
});

describe('the operator', () => {
  let docs: KubeDoc[];
  beforeAll(async () => (docs = await helm.render()));

  it('runs two replicas with leader election, probes and bounded resources', () => {
    const deployment = find(docs, 'Deployment', 'secai-fleet-operator');
    expect((deployment.spec as { replicas: number }).replicas).toBe(2);
    const [operator] = podSpec(deployment).containers;
    expect(flagValues(operator!.args, 'leader-elect')).toEqual(['true']);
    expect(flagValues(operator!.args, 'namespace')).toEqual(['secai-system']);
    expect(flagValues(operator!.args, 'fleet-node-selector')).toEqual([DEFAULT_FLEET_SELECTOR]);
    expect(envOf(operator!, { 'metadata.name': 'pod-x' }).POD_NAME).toBe('pod-x');
    expect(operator!.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(operator!.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
    const metricsPort = operator!.ports!.find((p) => p.name === 'metrics')!.containerPort;
    expect(flagValues(operator!.args, 'metrics-bind-address')).toEqual([`:${metricsPort}`]);
    expect(operator!.resources?.requests).toEqual({ cpu: expect.any(String), memory: expect.any(String) });
    expect(operator!.resources?.limits).toEqual({ cpu: expect.any(String), memory: expect.any(String) });
    expect(find(docs, 'PodDisruptionBudget', 'secai-fleet-operator').spec).toMatchObject({ maxUnavailable: 1 });
  });

  it('runs the bundle the tests and the benchmarks run, with the same node flags', () => {
    const [operator] = podSpec(find(docs, 'Deployment', 'secai-fleet-operator')).containers;
    expect(operator!.command).toEqual(['node', ...OPERATOR_NODE_FLAGS, OPERATOR_BUNDLE]);
  });

  it('runs under the restricted security context', () => {
    const spec = podSpec(find(docs, 'Deployment', 'secai-fleet-operator'));
    expect(spec.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(spec.hostNetwork).toBeUndefined();
    expect(spec.containers[0]!.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(spec.volumes?.every((v) => v.emptyDir)).toBe(true);
  });

  it('refuses two replicas without leader election', async () => {
    const result = await helm.template({ values: { operator: { leaderElection: { enabled: false } } } });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('needs operator.leaderElection.enabled');
    await expect(helm.render({ values: { operator: { replicas: 1, leaderElection: { enabled: false } } } })).resolves.toBeDefined();
  });

  it('serves the channel on the Service whose name the certificate carries, and metrics on another', () => {
    const channel = find(docs, 'Service', 'secai-operator').spec as { ports: { port: number; targetPort: string }[]; selector: Record<string, string> };
    expect(channel.ports).toEqual([{ name: 'channel', port: 9443, targetPort: 'channel', protocol: 'TCP' }]);
    expect((find(docs, 'Service', 'secai-operator').spec as { type: string }).type).toBe('ClusterIP');
    const args = podSpec(find(docs, 'Deployment', 'secai-fleet-operator')).containers[0]!.args;
    expect(flagValues(args, 'channel-dns-name')).toEqual(['secai-operator.secai-system.svc', 'secai-operator.secai-system.svc.cluster.local']);
    expect(flagValues(args, 'channel-listen')).toEqual(['0.0.0.0:9443']);
    expect(find(docs, 'Service', 'secai-fleet-operator-metrics').spec).toMatchObject({ ports: [{ name: 'metrics', targetPort: 'metrics' }] });
    // Only the leader serves the channel: the Service selects no Pods; the leader publishes its own
    // Pod IP in the Service's EndpointSlice.
    expect(channel.selector).toBeUndefined();
    expect(flagValues(args, 'channel-endpoint-service')).toEqual(['secai-operator']);
    const env = podSpec(find(docs, 'Deployment', 'secai-fleet-operator')).containers[0] as unknown as { env: { name: string; valueFrom?: unknown }[] };
    expect(env.env.find((e) => e.name === 'POD_IP')).toEqual({ name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } });
  });

  it('can expose the channel on a node port for agents outside the Pod network', async () => {
    const service = find(await helm.render({ values: { operator: { channel: { nodePort: 30943 } } } }), 'Service', 'secai-operator').spec;
    expect(service).toMatchObject({ type: 'NodePort', ports: [{ name: 'channel', port: 9443, nodePort: 30943 }] });
  });

  it('has a NetworkPolicy that admits the channel and scrapes and lets out only API and DNS traffic', () => {
    const policy = find(docs, 'NetworkPolicy', 'secai-fleet-operator').spec as { policyTypes: string[]; ingress: { ports: { port: unknown }[] }[]; egress: { ports: { port: number }[] }[] };
    expect(policy.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(policy.ingress.flatMap((r) => r.ports.map((p) => p.port))).toEqual(['channel', 'metrics']);
    expect(policy.egress.flatMap((r) => r.ports.map((p) => p.port)).sort()).toEqual([443, 53, 53, 6443]);
  });
});

describe('RBAC', () => {
  const source = parseAllDocuments(readFileSync(join(REPO_ROOT, 'operator/config/rbac.yaml'), 'utf8')).map((d) => d.toJS() as KubeDoc);
  const comparable = (doc: KubeDoc) => {
    const { labels: _labels, ...metadata } = doc.metadata;
    const { apiVersion, kind, ...rest } = doc;
    return { apiVersion, kind, ...rest, metadata };
  };
  const rbacKinds = new Set(['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding']);
  const inNamespace = (docs: KubeDoc[], ns: string) =>
    JSON.parse(JSON.stringify(docs).replaceAll('"secai-system"', `"${ns}"`)) as KubeDoc[];

  it.each(['secai-system', 'fleet-ops'])('equals operator/config/rbac.yaml rule by rule in namespace %s', async (ns) => {
    const rendered = (await helm.render({ namespace: ns })).filter((d) => rbacKinds.has(d.kind) && d.metadata.name !== 'secai-agent');
    // Helm orders objects by kind; rbac.yaml by reading order. Rules within each stay in order.
    const byKey = (docs: KubeDoc[]) =>
      docs.map(comparable).sort((a, b) => `${a.kind}/${a.metadata.namespace}/${a.metadata.name}`.localeCompare(`${b.kind}/${b.metadata.namespace}/${b.metadata.name}`));
    expect(byKey(rendered)).toEqual(byKey(inNamespace(source, ns)));
  });

  it('grants the agent nothing: no binding names its ServiceAccount', async () => {
    const docs = await helm.render();
    const bindings = docs.filter((d) => d.kind.endsWith('Binding'));
    expect(bindings.length).toBeGreaterThan(0);
    for (const binding of bindings) expect(JSON.stringify(binding.subjects)).not.toContain('secai-agent');
    expect(find(docs, 'ServiceAccount', 'secai-agent').automountServiceAccountToken).toBe(false);
  });
});

describe('the agent DaemonSet', () => {
  let docs: KubeDoc[];
  let spec: PodSpec;
  let agent: Container;
  beforeAll(async () => {
    docs = await helm.render({ values: { agent: { alwaysAllow: ['10.42.0.0/16:9443'], allowForeignHooks: ['ip/kube-proxy/filter-output'], inboundPorts: [10250], vault: { header: '/var/lib/secai/vault.luks', mapper: 'secai-vault' }, tpmTcti: 'device:/dev/tpmrm0' } } });
    spec = podSpec(find(docs, 'DaemonSet', 'secai-agent'));
    agent = spec.containers[0]!;
  });

  it('runs the CUDA build of the image when asked for it, and only then', async () => {
    const image = (d: KubeDoc[]) => podSpec(find(d, 'DaemonSet', 'secai-agent')).containers[0] as unknown as { image: string };
    expect(image(await helm.render({ values: {} })).image).toMatch(/secai-fleet:[^-]+$/);
    expect(image(await helm.render({ values: { image: { flavor: 'cuda' } } })).image).toMatch(/secai-fleet:.+-cuda$/);
  });

  it('runs on fleet nodes, including those tainted not-compliant', () => {
    expect(spec.nodeSelector).toEqual({ 'secai.io/node': 'true' });
    expect(spec.tolerations).toContainEqual({ key: NOT_COMPLIANT_TAINT.key, operator: 'Exists', effect: NOT_COMPLIANT_TAINT.effect });
  });

  it('holds no API credentials: only a projected token for the channel audience, at the path the agent reads', () => {
    expect(spec.serviceAccountName).toBe('secai-agent');
    expect(spec.automountServiceAccountToken).toBe(false);
    const config = parseAgentConfig(agent.args!, envOf(agent, { 'spec.nodeName': 'node-a' }));
    expect(config.nodeName).toBe('node-a');
    const token = volumeHolding(spec, agent, config.tokenFile)!;
    expect(token.mount.readOnly).toBe(true);
    expect(token.volume.projected?.sources).toEqual([
      { serviceAccountToken: { audience: TOKEN_AUDIENCE, expirationSeconds: 3600, path: config.tokenFile.slice(token.mount.mountPath.length + 1) } },
    ]);
  });

  it('trusts the CA the operator publishes and names the operator the certificate is for', () => {
    const config = parseAgentConfig(agent.args!, { NODE_NAME: 'node-a' });
    const ca = volumeHolding(spec, agent, config.caFile)!;
    expect(ca.volume.configMap).toEqual({ name: 'secai-agent-ca', optional: true });
    expect(config.caFile.slice(ca.mount.mountPath.length + 1)).toBe('ca.crt');
    const operatorArgs = podSpec(find(docs, 'Deployment', 'secai-fleet-operator')).containers[0]!.args;
    expect(flagValues(operatorArgs, 'channel-dns-name')).toContain(config.operatorServerName);
    expect(config.operatorAddress).toBe('secai-operator.secai-system.svc:9443');
  });

  it('keeps its state, audit log and vault on host paths, and opens its metrics port', () => {
    const config = parseAgentConfig(agent.args!, { NODE_NAME: 'node-a' });
    const hostPathAt = (path: string) => {
      const mount = agent.volumeMounts!.find((m) => m.mountPath === path)!;
      return volumeOf(spec, mount.name)!.hostPath?.path;
    };
    expect(hostPathAt(config.stateDir)).toBe('/var/lib/secai/agent');
    expect(hostPathAt(config.auditDir)).toBe('/var/lib/secai/audit');
    expect(hostPathAt(config.vaultMountPoint!)).toBe('/var/lib/secai/vault');
    expect(hostPathAt(config.vaultHeader!)).toBe('/var/lib/secai/vault.luks');
    expect(config.tpmTcti).toBe('device:/dev/tpmrm0');
    expect(config.metricsListen).toBe('0.0.0.0:9464');
    expect(config.inboundPorts).toEqual([9464, 10250]);
    expect(config.alwaysAllow).toEqual(['10.42.0.0/16:9443']);
    expect(config.allowForeignHooks).toEqual(['ip/kube-proxy/filter-output']);
  });

  it('is in the host network namespace and privileged by default, for its sandboxes and devices', () => {
    expect(spec.hostNetwork).toBe(true);
    expect(spec.hostPID).toBeUndefined();
    expect(agent.securityContext).toEqual({ runAsUser: 0, runAsNonRoot: false, readOnlyRootFilesystem: true, privileged: true });
  });

  it('unprivileged, it holds CAP_NET_ADMIN alone under the runtime seccomp profile', async () => {
    const unprivileged = podSpec(find(await helm.render({ values: { agent: { privileged: false } } }), 'DaemonSet', 'secai-agent'));
    expect(unprivileged.securityContext).toEqual({ seccompProfile: { type: 'RuntimeDefault' } });
    expect(unprivileged.containers[0]!.securityContext).toEqual({
      runAsUser: 0,
      runAsNonRoot: false,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'], add: ['NET_ADMIN'] },
    });
  });
});

describe('host mode', () => {
  let docs: KubeDoc[];
  let spec: PodSpec;
  beforeAll(async () => {
    docs = await helm.render({ values: { agent: { mode: 'host' } }, apiVersions: ['monitoring.coreos.com/v1'] });
    spec = podSpec(find(docs, 'DaemonSet', 'secai-agent-token-relay'));
  });

  it('runs only the token relay: no host network, no capability, no other host path', () => {
    expect(docs.some((d) => d.kind === 'DaemonSet' && d.metadata.name === 'secai-agent')).toBe(false);
    expect(spec.hostNetwork).toBeUndefined();
    expect(spec.containers.map((c) => c.name)).toEqual(['token-relay']);
    expect(spec.securityContext).toEqual({ seccompProfile: { type: 'RuntimeDefault' } });
    expect(spec.containers[0]!.securityContext).toEqual({
      runAsUser: 0,
      runAsNonRoot: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    expect(spec.volumes!.filter((v) => v.hostPath).map((v) => v.hostPath)).toEqual([{ path: '/run/secai/agent', type: 'DirectoryOrCreate' }]);
    expect(spec.tolerations).toContainEqual({ key: NOT_COMPLIANT_TAINT.key, operator: 'Exists', effect: NOT_COMPLIANT_TAINT.effect });
  });

  it('relays the Pod-bound token to the host path the host agent reads', () => {
    const relay = spec.containers[0]!;
    const config = parseTokenRelayConfig(relay.args!, {});
    expect(config.hostTokenFile).toBe('/run/secai/agent/token');
    expect(config.intervalMs).toBe(60_000);
    expect(volumeHolding(spec, relay, config.tokenFile)!.volume.projected?.sources[0]?.serviceAccountToken?.audience).toBe(TOKEN_AUDIENCE);
    expect(volumeHolding(spec, relay, config.hostTokenFile)!.volume.hostPath?.path).toBe('/run/secai/agent');
    expect(spec.serviceAccountName).toBe('secai-agent');
    expect(spec.automountServiceAccountToken).toBe(false);
  });

  it('denies the relay all network traffic, and scrapes the host agent at the node address', () => {
    expect(find(docs, 'NetworkPolicy', 'secai-agent-token-relay').spec).toMatchObject({ policyTypes: ['Ingress', 'Egress'] });
    expect((find(docs, 'NetworkPolicy', 'secai-agent-token-relay').spec as { ingress?: unknown }).ingress).toBeUndefined();
    const endpoint = (find(docs, 'PodMonitor', 'secai-fleet-agent').spec as { podMetricsEndpoints: { relabelings: Record<string, unknown>[] }[] }).podMetricsEndpoints[0]!;
    expect(endpoint.relabelings[0]).toEqual({ sourceLabels: ['__meta_kubernetes_pod_host_ip'], targetLabel: '__address__', regex: '(.+)', replacement: '${1}:9464' });
  });
});

describe('CRDs', () => {
  const sources = Object.fromEntries(
    ['egresspolicies', 'inferenceservices', 'models', 'secainodes', 'vaultpolicies'].map((plural) => [
      `${plural}.secai.io`,
      parse(readFileSync(join(REPO_ROOT, 'crds', `${plural}.secai.io.yaml`), 'utf8')) as KubeDoc,
    ]),
  );

  it('the templates are generated from crds/ (npx tsx test/chart/chart-crd-templates.ts)', () => {
    for (const [path, text] of chartCrdTemplates(REPO_ROOT)) expect(readFileSync(join(REPO_ROOT, path), 'utf8')).toBe(text);
  });

  it('render as crds/ with the keep policy and the chart labels', async () => {
    const crds = (await helm.render()).filter((d) => d.kind === 'CustomResourceDefinition');
    expect(crds.map((c) => c.metadata.name).sort()).toEqual(Object.keys(sources).sort());
    for (const crd of crds) {
      const { labels, annotations, ...metadata } = crd.metadata;
      expect(annotations).toEqual({ 'helm.sh/resource-policy': 'keep' });
      expect(labels).toMatchObject({ 'app.kubernetes.io/name': 'secai-fleet', 'app.kubernetes.io/managed-by': 'Helm' });
      expect({ ...crd, metadata }).toEqual(sources[crd.metadata.name]);
    }
  });

  it('can be left to someone else, or without the keep policy', async () => {
    expect((await helm.render({ values: { crds: { install: false, keep: true } } })).filter((d) => d.kind === 'CustomResourceDefinition')).toEqual([]);
    const unkept = (await helm.render({ values: { crds: { install: true, keep: false } } })).filter((d) => d.kind === 'CustomResourceDefinition');
    expect(unkept).toHaveLength(5);
    for (const crd of unkept) expect(crd.metadata.annotations).toBeUndefined();
  });
});

describe('monitoring', () => {
  const rulesFile = parse(readFileSync(join(CHART, 'files/prometheus/alerts.yaml'), 'utf8')) as { groups: unknown[] };
  const monitoringKinds = (docs: KubeDoc[]) => docs.filter((d) => d.apiVersion === 'monitoring.coreos.com/v1').map((d) => d.kind).sort();

  it.each([
    ['auto, without the Prometheus Operator API: none', undefined, [], []],
    ['auto, with the API: all three', undefined, ['monitoring.coreos.com/v1'], ['PodMonitor', 'PrometheusRule', 'ServiceMonitor']],
    ['forced on, without the API: all three', { monitoring: { enabled: true } }, [], ['PodMonitor', 'PrometheusRule', 'ServiceMonitor']],
    ['off, with the API: none', { monitoring: { enabled: false } }, ['monitoring.coreos.com/v1'], []],
    ['rules off: the monitors only', { monitoring: { rules: { enabled: false } } }, ['monitoring.coreos.com/v1'], ['PodMonitor', 'ServiceMonitor']],
  ])('%s', async (_, values, apiVersions, kinds) => {
    expect(monitoringKinds(await helm.render({ ...(values ? { values } : {}), apiVersions }))).toEqual(kinds);
  });

  it('the PrometheusRule is the rule file promtool tests, and the monitors set the jobs and node labels the rules use', async () => {
    const docs = await helm.render({ apiVersions: ['monitoring.coreos.com/v1'], values: { monitoring: { enabled: 'auto', labels: { release: 'prom' }, interval: '15s', rules: { enabled: true }, grafanaDashboard: { enabled: true, labels: { grafana_dashboard: '1' } } } } });
    const rule = find(docs, 'PrometheusRule', 'secai-fleet');
    expect(rule.spec).toEqual(rulesFile);
    expect(rule.metadata.labels).toMatchObject({ release: 'prom' });
    const serviceMonitor = find(docs, 'ServiceMonitor', 'secai-fleet-operator').spec as { endpoints: { port: string; interval: string; relabelings: object[] }[] };
    expect(serviceMonitor.endpoints[0]).toMatchObject({ port: 'metrics', interval: '15s', relabelings: [{ action: 'replace', targetLabel: 'job', replacement: 'secai-fleet-operator' }] });
    const podMonitor = find(docs, 'PodMonitor', 'secai-fleet-agent').spec as { podMetricsEndpoints: { port: string; relabelings: object[] }[] };
    expect(podMonitor.podMetricsEndpoints[0]).toMatchObject({
      port: 'metrics',
      relabelings: [
        { action: 'replace', sourceLabels: ['__meta_kubernetes_pod_node_name'], targetLabel: 'node' },
        { action: 'replace', targetLabel: 'job', replacement: 'secai-fleet-agent' },
      ],
    });
  });

  it('ships a Grafana dashboard of valid JSON that queries only metrics the code exports', async () => {
    const configMap = find(await helm.render(), 'ConfigMap', 'secai-fleet-dashboard') as KubeDoc & { data: Record<string, string> };
    expect(configMap.metadata.labels).toMatchObject({ grafana_dashboard: '1' });
    const dashboard = JSON.parse(configMap.data['secai-fleet.json']!) as { uid: string; panels: { type: string; targets?: { expr: string }[] }[] };
    expect(dashboard.uid).toBe('secai-fleet');
    const exprs = dashboard.panels.flatMap((p) => p.targets ?? []).map((t) => t.expr);
    expect(exprs.length).toBeGreaterThan(20);
    const exported = exportedMetricNames(REPO_ROOT);
    const used = new Set(exprs.flatMap((e) => metricSelectors(e).map((s) => s.metric)));
    expect([...used].filter((m) => familyOf(m, exported) === undefined)).toEqual([]);
    // Every family the fleet view is about appears.
    for (const family of ['secai_nodes', 'secai_models', 'secai_egress_rollouts', 'secai_agent_egress_dropped_packets_total', 'secai_agent_quarantine_verdicts_total', 'secai_agent_vault_locked', 'secai_agent_audit_tree_size']) {
      expect(used).toContain(family);
    }
  });
});

describe('values.schema.json', () => {
  it('is strict: every object in it forbids unknown keys', () => {
    const schema = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8')) as object;
    const open: string[] = [];
    const walk = (node: unknown, path: string) => {
      if (!node || typeof node !== 'object') return;
      const n = node as { type?: string; properties?: Record<string, unknown>; additionalProperties?: unknown };
      if (n.type === 'object' && n.properties && n.additionalProperties !== false) open.push(path);
      for (const [key, child] of Object.entries(node)) walk(child, `${path}/${key}`);
    };
    walk(schema, '');
    expect(open).toEqual([]);
  });

  it.each([
    ['an unknown top-level key', { operatr: { replicas: 2 } }, 'operatr'],
    ['an unknown nested key', { agent: { containerd: { socket: '/run/k3s/containerd/containerd.sock' } } }, 'containerd'],
    ['zero replicas', { operator: { replicas: 0 } }, 'replicas'],
    ['six replicas', { operator: { replicas: 6 } }, 'replicas'],
    ['an unknown agent mode', { agent: { mode: 'sidecar' } }, 'mode'],
    ['a port out of range', { operator: { metricsPort: 70000 } }, 'metricsPort'],
    ['a channel node port outside the node-port range', { operator: { channel: { nodePort: 8443 } } }, 'nodePort'],
    ['a token lifetime too short for the relay', { agent: { token: { expirationSeconds: 600 } } }, 'expirationSeconds'],
    ['a relay interval over five minutes', { agent: { host: { relayIntervalSeconds: 600 } } }, 'relayIntervalSeconds'],
    ['an always-allow entry that is not an address', { agent: { alwaysAllow: ['api.example.com:6443'] } }, 'alwaysAllow'],
    ['a foreign hook without its family', { agent: { allowForeignHooks: ['kube-proxy/filter-output'] } }, 'allowForeignHooks'],
    ['a relative host path', { agent: { hostPaths: { state: 'var/lib/secai' } } }, 'state'],
    ['an image tag with a space', { image: { tag: 'v1 latest' } }, 'tag'],
    ['a digest that is not sha256', { image: { digest: 'md5:abc' } }, 'digest'],
    ['a monitoring switch that is not auto, true or false', { monitoring: { enabled: 'yes' } }, 'enabled'],
    ['a bad log level', { operator: { logLevel: 'verbose' } }, 'logLevel'],
    ['removing the agent node selector', { agent: { nodeSelector: null } }, 'nodeSelector'],
    ['a toleration with an unknown effect', { agent: { extraTolerations: [{ key: 'a', operator: 'Exists', effect: 'Sometimes' }] } }, 'effect'],
  ])('rejects %s', async (_, values, field) => {
    const result = await helm.template({ values });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('values don\'t meet the specifications of the schema');
    expect(result.stderr).toContain(field);
  });
});
