// Pull Secrets as the operator caches and resolves them: the docker config forms (auth, username and
// password, identitytoken, Docker Hub's v1 key), and one reason for each way a Secret cannot serve
// the Model's registry, none of whose messages names a value.
import type { Informer } from '../runtime/informer.js';
import { secretToDigests, type SecretDigests } from './caches.js';
import { CacheReferenceResolver, ResolutionReason } from './resolver.js';

const NS = 'secai-system';
const b64 = (s: string) => Buffer.from(s).toString('base64');
const PASSWORD = 'pa:ss-w0rd-value';

function resolverOf(secrets: { name: string; type?: string; data: Record<string, string> }[]): CacheReferenceResolver {
  const cached = new Map<string, SecretDigests>();
  for (const s of secrets) {
    const view = secretToDigests({ apiVersion: 'v1', kind: 'Secret', metadata: { name: s.name, namespace: NS, uid: `uid-${s.name}`, resourceVersion: '7' }, ...(s.type ? { type: s.type } : {}), data: s.data });
    cached.set(`${NS}/${s.name}`, view);
  }
  // The informer's cache is the unit's edge: only get() is read.
  const informer = { get: (key: string) => cached.get(key) } as unknown as Informer<SecretDigests>;
  return new CacheReferenceResolver(NS, informer as never, informer);
}

const pull = (name: string, config: unknown) => ({ name, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': b64(typeof config === 'string' ? config : JSON.stringify(config)) } });

const resolver = resolverOf([
  pull('auth', { auths: { 'registry.example:5000': { auth: b64(`robot:${PASSWORD}`) } } }),
  pull('fields', { auths: { 'https://Registry.Example:5000/v2/': { username: 'robot', password: PASSWORD } } }),
  pull('identity', { auths: { 'registry.example:5000': { identitytoken: 'refresh-token-value' } } }),
  pull('hub', { auths: { 'https://index.docker.io/v1/': { auth: b64(`robot:${PASSWORD}`) } } }),
  pull('other-registry', { auths: { 'elsewhere.example': { auth: b64(`robot:${PASSWORD}`) } } }),
  pull('no-colon', { auths: { 'registry.example:5000': { auth: b64(PASSWORD.replace(':', '')) } } }),
  pull('no-auths', { credsStore: 'desktop' }),
  pull('half', { auths: { 'registry.example:5000': { username: 'robot' } } }),
  pull('not-json', 'not json'),
  { name: 'opaque', type: 'Opaque', data: { '.dockerconfigjson': b64(JSON.stringify({ auths: { 'registry.example:5000': { auth: b64(`robot:${PASSWORD}`) } } })) } },
  { name: 'no-key', type: 'kubernetes.io/dockerconfigjson', data: {} },
]);

it.each([
  ['auth (base64 user:password, a colon in the password)', 'auth', 'registry.example:5000', { username: 'robot', password: PASSWORD, identityToken: '' }],
  ['username and password under a URL key, any case', 'fields', 'registry.example:5000', { username: 'robot', password: PASSWORD, identityToken: '' }],
  ['an identity token', 'identity', 'registry.example:5000', { username: '', password: '', identityToken: 'refresh-token-value' }],
  ["Docker Hub under its v1 index key", 'hub', 'docker.io', { username: 'robot', password: PASSWORD, identityToken: '' }],
])('reads %s', (_name, secret, registry, expected) => {
  expect(resolver.registryCredential(secret, registry)).toEqual({ ok: true, value: { ...expected, revision: `uid-${secret}/7` } });
});

it.each([
  ['a Secret that does not exist', 'missing', ResolutionReason.PullSecretNotFound],
  ['a Secret of another type', 'opaque', ResolutionReason.PullSecretWrongType],
  ['no .dockerconfigjson key', 'no-key', ResolutionReason.PullSecretInvalid],
  ['a config that is not JSON', 'not-json', ResolutionReason.PullSecretInvalid],
  ['a config without auths', 'no-auths', ResolutionReason.PullSecretInvalid],
  ['an auth that is not user:password', 'no-colon', ResolutionReason.PullSecretInvalid],
  ['a username without a password', 'half', ResolutionReason.PullSecretInvalid],
  ['no entry for the registry', 'other-registry', ResolutionReason.PullSecretNoEntry],
])('refuses %s with its own reason, naming no value', (_name, secret, reason) => {
  const got = resolver.registryCredential(secret, 'registry.example:5000');
  expect(got).toMatchObject({ ok: false, reason });
  const message = (got as { message: string }).message;
  expect(message).toContain(`secai-system/${secret}`);
  for (const value of [PASSWORD, PASSWORD.replace(':', ''), b64(`robot:${PASSWORD}`), 'robot']) expect(message).not.toContain(value);
});

it('caches other Secrets as digests only', () => {
  const view = secretToDigests({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 't', namespace: NS }, type: 'Opaque', data: { token: b64(PASSWORD) } });
  expect(JSON.stringify(view)).not.toContain(PASSWORD);
  expect(view.pullSecret).toBeUndefined();
});
