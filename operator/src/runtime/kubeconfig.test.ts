// Reading kubeconfigs and the in-cluster ServiceAccount: which server, TLS material and headers
// each form gives, relative paths, rotating tokens, the errors, and credential plugins, which go
// through @kubernetes/client-node (a real exec plugin here).
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { accessFromKubeconfig, CREDENTIAL_REFRESH_MS, inClusterAccess, loadClusterAccess } from './kubeconfig.js';

let dir: string;
const b64 = (s: string) => Buffer.from(s).toString('base64');

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'secai-kubeconfig-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function kubeconfig(user: Record<string, unknown>, cluster: Record<string, unknown> = { server: 'https://api.example:6443/' }, name = 'config'): string {
  const path = join(dir, name);
  writeFileSync(
    path,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      'current-context': 'ctx',
      clusters: [{ name: 'other', cluster: { server: 'https://wrong:1' } }, { name: 'c', cluster }],
      contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u' } }],
      users: [{ name: 'u', user }],
    }),
  );
  return path;
}

it.each<[string, Record<string, unknown>, Record<string, string>]>([
  ['a token', { token: 'abc' }, { Authorization: 'Bearer abc' }],
  ['a token and impersonation', { token: 'abc', as: 'alice' }, { Authorization: 'Bearer abc', 'Impersonate-User': 'alice' }],
  ['client certificates only', { 'client-certificate-data': b64('CERT'), 'client-key-data': b64('KEY') }, {}],
])('a kubeconfig with %s gives the current context’s server and headers', async (_, user, headers) => {
  const access = accessFromKubeconfig(kubeconfig(user, { server: 'https://api.example:6443/', 'certificate-authority-data': b64('CA') }))!;
  expect(access.server.href).toBe('https://api.example:6443/');
  expect(access.ca?.toString()).toBe('CA');
  expect(await access.headers()).toEqual(headers);
  if (user['client-key-data']) expect([access.cert?.toString(), access.key?.toString()]).toEqual(['CERT', 'KEY']);
});

it('reads certificate files relative to the kubeconfig’s directory', () => {
  mkdirSync(join(dir, 'pki'));
  writeFileSync(join(dir, 'pki', 'ca.crt'), 'CA-FILE');
  writeFileSync(join(dir, 'pki', 'admin.crt'), 'CERT-FILE');
  writeFileSync(join(dir, 'pki', 'admin.key'), 'KEY-FILE');
  const access = accessFromKubeconfig(
    kubeconfig({ 'client-certificate': 'pki/admin.crt', 'client-key': join(dir, 'pki', 'admin.key') }, { server: 'https://api:6443', 'certificate-authority': 'pki/ca.crt' }),
  )!;
  expect([access.ca, access.cert, access.key].map(String)).toEqual(['CA-FILE', 'CERT-FILE', 'KEY-FILE']);
});

it('re-reads a token file once the refresh interval has passed', async () => {
  let now = 1_000_000;
  writeFileSync(join(dir, 'token'), 'first\n');
  const access = accessFromKubeconfig(kubeconfig({ 'token-file': 'token' }), () => now)!;
  expect(await access.headers()).toEqual({ Authorization: 'Bearer first' });
  writeFileSync(join(dir, 'token'), 'second');
  expect(await access.headers()).toEqual({ Authorization: 'Bearer first' });
  now += CREDENTIAL_REFRESH_MS + 1;
  expect(await access.headers()).toEqual({ Authorization: 'Bearer second' });
});

it.each<[string, () => string, RegExp]>([
  ['an unknown current context', () => { const p = join(dir, 'x'); writeFileSync(p, stringify({ 'current-context': 'nope', contexts: [] })); return p; }, /context "nope" not found/],
  ['a cluster without a server', () => kubeconfig({ token: 't' }, {}), /has no server/],
  ['a file that is not a kubeconfig', () => { const p = join(dir, 'x'); writeFileSync(p, '42'); return p; }, /is not a kubeconfig/],
])('refuses %s', (_, make, error) => {
  expect(() => accessFromKubeconfig(make())).toThrow(error);
});

it('uses the in-cluster ServiceAccount, re-reading its rotating token', async () => {
  let now = 5_000_000;
  writeFileSync(join(dir, 'token'), 'sa-1');
  writeFileSync(join(dir, 'ca.crt'), 'CLUSTER-CA');
  const env = { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' };
  const access = inClusterAccess(env, dir, () => now);
  expect(access.server.href).toBe('https://[fd00::1]/');
  expect(access.ca?.toString()).toBe('CLUSTER-CA');
  writeFileSync(join(dir, 'token'), 'sa-2');
  now += CREDENTIAL_REFRESH_MS + 1;
  expect(await access.headers()).toEqual({ Authorization: 'Bearer sa-2' });
  expect(() => inClusterAccess({}, dir)).toThrow(/not in a cluster/);
});

it('prefers the given file, then ~/.kube/config, then the ServiceAccount', async () => {
  const home = join(dir, 'home');
  mkdirSync(join(home, '.kube'), { recursive: true });
  writeFileSync(join(dir, 'token'), 'sa');
  writeFileSync(join(dir, 'ca.crt'), 'CA');
  const env = { KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '443' };
  const sources = { env, home, serviceAccountDir: dir };
  expect((await loadClusterAccess(sources)).server.host).toBe('10.0.0.1');
  writeFileSync(join(home, '.kube', 'config'), stringify({ 'current-context': 'h', clusters: [{ name: 'h', cluster: { server: 'https://home:1' } }], contexts: [{ name: 'h', context: { cluster: 'h', user: 'h' } }], users: [{ name: 'h', user: { token: 'x' } }] }));
  expect((await loadClusterAccess(sources)).server.host).toBe('home:1');
  expect((await loadClusterAccess({ ...sources, file: kubeconfig({ token: 't' }) })).server.host).toBe('api.example:6443');
});

it('runs an exec credential plugin through @kubernetes/client-node', async () => {
  const plugin = join(dir, 'plugin.sh');
  writeFileSync(plugin, `#!/bin/sh\necho '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"from-plugin-'"$PLUGIN_ARG"'"}}'\n`);
  chmodSync(plugin, 0o755);
  const file = kubeconfig({ exec: { apiVersion: 'client.authentication.k8s.io/v1', command: plugin, env: [{ name: 'PLUGIN_ARG', value: 'ok' }], interactiveMode: 'Never' } });
  expect(accessFromKubeconfig(file)).toBeUndefined();
  const access = await loadClusterAccess({ file });
  expect(access.server.href).toBe('https://api.example:6443/');
  expect(await access.headers()).toEqual({ Authorization: 'Bearer from-plugin-ok' });
});
