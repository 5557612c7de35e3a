// The k3s tooling of hack/k3s and hack/k3d: every script's --dry-run prints its whole plan
// (commands, paths, flags, file contents) and changes nothing; --root places the real files in a
// temporary root; bundles missing a part and malformed arguments are refused; the k3d config and
// the registries.yaml template agree with what the scripts pin and write.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { runCommand } from '../../agents/src/exec.js';
import { REPO_ROOT } from '../../hack/control-plane/control-plane.js';

const K3S = join(REPO_ROOT, 'hack/k3s');
const K3D = join(REPO_ROOT, 'hack/k3d');
const K8S_VERSION = readFileSync(join(REPO_ROOT, 'hack/versions.env'), 'utf8').match(/^K8S_VERSION=(.+)$/m)![1]!;
const K3S_VERSION = `${K8S_VERSION}+k3s1`;
// What the machine's own k3s would be: dry runs and --root runs must never create these.
const MACHINE_PATHS = ['/etc/rancher/k3s/config.yaml', '/etc/rancher/k3s/registries.yaml', '/usr/local/bin/k3s', '/var/lib/rancher/k3s/agent/images'];
const machineBefore = MACHINE_PATHS.map((path) => existsSync(path));

let scratch: string;
let bundle: string;
let token: string;
let ca: string;
let helm: string;

beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'secai-k3s-tooling-'));
  // A stand-in bundle: the scripts only place these files.
  bundle = join(scratch, 'bundle');
  mkdirSync(bundle);
  writeFileSync(join(bundle, 'k3s'), '#!/bin/sh\n');
  writeFileSync(join(bundle, 'install.sh'), '#!/bin/sh\n');
  writeFileSync(join(bundle, 'k3s-airgap-images-amd64.tar.zst'), 'images');
  token = join(scratch, 'token');
  writeFileSync(token, 'K10secret::server:secret\n');
  ca = join(scratch, 'ca.pem');
  writeFileSync(ca, '-----BEGIN CERTIFICATE-----\n');
  // Where TEST_ASSET_HELM points; a dry run names it and never runs it.
  helm = join(scratch, 'helm');
  writeFileSync(helm, '#!/bin/sh\nexit 1\n', { mode: 0o755 });
});

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

afterAll(() => {
  expect(MACHINE_PATHS.map((path) => existsSync(path))).toEqual(machineBefore);
});

async function plan(script: string, args: string[]): Promise<string[]> {
  const result = await runCommand(script, [...args, '--dry-run'], { env: { ...process.env, TEST_ASSET_HELM: helm } });
  if (result.code !== 0) throw new Error(`${script} failed: ${result.stderr}`);
  return result.stdout.split('\n').filter((line) => line !== '');
}

/** The content a plan writes to PATH, from its `write:` block. */
function written(lines: string[], path: string): string {
  const start = lines.findIndex((line) => line.startsWith(`write: ${path} `));
  if (start < 0) throw new Error(`the plan writes no ${path}`);
  const content: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (!line.startsWith('  | ')) break;
    content.push(line.slice(4));
  }
  return content.join('\n');
}

describe('install-server.sh', () => {
  it('--dry-run prints the air-gap install and nothing else happens', async () => {
    const lines = await plan(join(K3S, 'install-server.sh'), ['--bundle', bundle, '--node-ip', '192.0.2.10']);
    expect(lines).toEqual([
      `install: ${bundle}/k3s -> /usr/local/bin/k3s (mode 0755)`,
      `install: ${bundle}/k3s-airgap-images-amd64.tar.zst -> /var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst (mode 0644)`,
      'write: /etc/rancher/k3s/config.yaml (mode 0600)',
      '  | # k3s server of a SecAI lab cluster (hack/k3s/install-server.sh).',
      '  | write-kubeconfig-mode: "0600"',
      '  | disable:',
      '  |   - traefik',
      '  | secrets-encryption: true',
      '  | node-ip: "192.0.2.10"',
      `run: env INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_VERSION=${K3S_VERSION} INSTALL_K3S_EXEC=server sh ${bundle}/install.sh`,
      'run: /usr/local/bin/k3s kubectl wait --for=condition=Ready node --all --timeout=180s',
    ]);
  });

  it('writes a registries.yaml equal to the shipped template for the same mirror', async () => {
    const lines = await plan(join(K3S, 'install-server.sh'), ['--bundle', bundle, '--registry-mirror', 'mirror.secai.internal:5000', '--registry-ca', ca]);
    expect(lines).toContain(`install: ${ca} -> /etc/rancher/k3s/registry-ca.pem (mode 0644)`);
    expect(lines).toContain('write: /etc/rancher/k3s/registries.yaml (mode 0600)');
    expect(parse(written(lines, '/etc/rancher/k3s/registries.yaml'))).toEqual(parse(readFileSync(join(K3S, 'registries.yaml'), 'utf8')));
  });

  it('--root places the files under the root with their modes and starts nothing', async () => {
    const root = join(scratch, 'server-root');
    const result = await runCommand(join(K3S, 'install-server.sh'), ['--bundle', bundle, '--root', root]);
    expect(result.code).toBe(0);
    expect(result.stderr).toContain("k3s's install.sh (systemd unit, service start) skipped");
    expect(statSync(join(root, 'usr/local/bin/k3s')).mode & 0o777).toBe(0o755);
    expect(statSync(join(root, 'var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst')).mode & 0o777).toBe(0o644);
    expect(statSync(join(root, 'etc/rancher/k3s/config.yaml')).mode & 0o777).toBe(0o600);
    expect(parse(readFileSync(join(root, 'etc/rancher/k3s/config.yaml'), 'utf8'))).toEqual({
      'write-kubeconfig-mode': '0600',
      disable: ['traefik'],
      'secrets-encryption': true,
    });
  });

  it.each([
    ['k3s', 'the bundle has no k3s binary'],
    ['install.sh', 'the bundle has no k3s install.sh'],
    ['k3s-airgap-images-amd64.tar.zst', 'the bundle has no k3s-airgap-images'],
  ])('refuses a bundle without %s, even in a dry run', async (missing, message) => {
    const partial = join(scratch, `without-${missing}`);
    mkdirSync(partial);
    for (const name of ['k3s', 'install.sh', 'k3s-airgap-images-amd64.tar.zst'].filter((name) => name !== missing)) writeFileSync(join(partial, name), 'x');
    const result = await runCommand(join(K3S, 'install-server.sh'), ['--bundle', partial, '--dry-run']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(message);
    expect(result.stdout).not.toContain('install:');
  });

  it('refuses a registry mirror that is not HOST[:PORT]', async () => {
    const result = await runCommand(join(K3S, 'install-server.sh'), ['--bundle', bundle, '--registry-mirror', 'https://mirror/x', '--dry-run']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('--registry-mirror wants HOST[:PORT]');
  });
});

describe('install-agent.sh', () => {
  it('--dry-run joins with the token file, the SecAI label and the not-compliant taint', async () => {
    const lines = await plan(join(K3S, 'install-agent.sh'), [
      '--bundle',
      bundle,
      '--server',
      'https://192.0.2.10:6443',
      '--token-file',
      token,
      '--node-label',
      'topology.secai.io/rack=r1',
    ]);
    expect(lines.slice(0, 3)).toEqual([
      `install: ${bundle}/k3s -> /usr/local/bin/k3s (mode 0755)`,
      `install: ${bundle}/k3s-airgap-images-amd64.tar.zst -> /var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst (mode 0644)`,
      `install: ${token} -> /etc/rancher/k3s/agent-token (mode 0600)`,
    ]);
    expect(parse(written(lines, '/etc/rancher/k3s/config.yaml'))).toEqual({
      server: 'https://192.0.2.10:6443',
      'token-file': '/etc/rancher/k3s/agent-token',
      'node-label': ['secai.io/node=true', 'topology.secai.io/rack=r1'],
      'node-taint': ['secai.io/not-compliant:NoSchedule'],
    });
    expect(lines.at(-1)).toBe(
      `run: env INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_VERSION=${K3S_VERSION} INSTALL_K3S_EXEC=agent K3S_URL=https://192.0.2.10:6443 K3S_TOKEN_FILE=/etc/rancher/k3s/agent-token sh ${bundle}/install.sh`,
    );
    // The token's value never appears in the plan.
    expect(lines.join('\n')).not.toContain('K10secret');
  });

  it('--root installs the token file readable by root only', async () => {
    const root = join(scratch, 'agent-root');
    const result = await runCommand(join(K3S, 'install-agent.sh'), ['--bundle', bundle, '--server', 'https://192.0.2.10:6443', '--token-file', token, '--root', root]);
    expect(result.code).toBe(0);
    expect(statSync(join(root, 'etc/rancher/k3s/agent-token')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(root, 'etc/rancher/k3s/agent-token'), 'utf8')).toBe(readFileSync(token, 'utf8'));
  });

  it.each([
    [['--server', 'http://192.0.2.10:6443'], '--server wants https://HOST:PORT'],
    [['--server', 'https://192.0.2.10:6443', '--node-label', 'bad label'], 'invalid --node-label'],
    [['--server', 'https://192.0.2.10:6443', '--token-file', '/nonexistent/token'], 'no token file'],
  ])('refuses %j', async (args, message) => {
    const withToken = args.includes('--token-file') ? args : [...args, '--token-file', token];
    const result = await runCommand(join(K3S, 'install-agent.sh'), ['--bundle', bundle, ...withToken, '--dry-run']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(message);
  });
});

describe('helm-install.sh', () => {
  it('--dry-run installs the chart for host agents with the channel on a NodePort', async () => {
    const extra = join(scratch, 'extra-values.yaml');
    writeFileSync(extra, 'operator:\n  replicas: 1\n');
    const lines = await plan(join(K3S, 'helm-install.sh'), ['--values', extra]);
    expect(lines).toEqual([
      `run: ${helm} upgrade --install secai-fleet ${REPO_ROOT}/charts/secai-fleet --namespace secai-system --create-namespace --kubeconfig /etc/rancher/k3s/k3s.yaml --values ${K3S}/values-k3s.yaml --values ${extra} --wait --timeout 5m`,
    ]);
    expect(parse(readFileSync(join(K3S, 'values-k3s.yaml'), 'utf8'))).toEqual({
      agent: { mode: 'host' },
      operator: { channel: { nodePort: 30943 } },
    });
  });

  it('refuses a namespace that is not a DNS label', async () => {
    const result = await runCommand(join(K3S, 'helm-install.sh'), ['--namespace', 'Secai_System', '--dry-run']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('invalid --namespace');
  });
});

describe('k3d', () => {
  const cluster = parse(readFileSync(join(K3D, 'cluster.yaml'), 'utf8'));

  it('is one server and two SecAI-labelled agents of the pinned k3s, bound to loopback, Traefik off', () => {
    expect(cluster).toMatchObject({ apiVersion: 'k3d.io/v1alpha5', kind: 'Simple', servers: 1, agents: 2, image: `rancher/k3s:${K3S_VERSION.replace('+', '-')}` });
    expect(cluster.kubeAPI.hostIP).toBe('127.0.0.1');
    expect(cluster.registries.create.host).toBe('127.0.0.1');
    expect(cluster.options.k3s.extraArgs).toContainEqual({ arg: '--disable=traefik', nodeFilters: ['server:*'] });
    expect(cluster.options.k3s.nodeLabels).toContainEqual({ label: 'secai.io/node=true', nodeFilters: ['agent:*'] });
    expect(cluster.options.kubeconfig.updateDefaultKubeconfig).toBe(false);
  });

  it('up.sh --dry-run creates the cluster, imports images, writes the kubeconfig and installs the chart', async () => {
    const lines = await plan(join(K3D, 'up.sh'), ['--image', 'secai/agent:dev', '--image', 'secai/operator:dev']);
    const kubeconfig = join(REPO_ROOT, '.lab/k3d-kubeconfig');
    expect(lines).toEqual([
      `run: k3d cluster create --config ${K3D}/cluster.yaml`,
      'run: k3d image import --cluster secai secai/agent:dev secai/operator:dev',
      `run: mkdir -p ${REPO_ROOT}/.lab`,
      `run: k3d kubeconfig write secai --output ${kubeconfig}`,
      `run: ${helm} upgrade --install secai-fleet ${REPO_ROOT}/charts/secai-fleet --namespace secai-system --create-namespace --kubeconfig ${kubeconfig} --values ${K3S}/values-k3s.yaml --wait --timeout 5m`,
    ]);
    expect(existsSync(kubeconfig)).toBe(false);
  });

  it('up.sh down --dry-run deletes the cluster', async () => {
    expect(await plan(join(K3D, 'up.sh'), ['down'])).toEqual(['run: k3d cluster delete secai']);
  });
});
