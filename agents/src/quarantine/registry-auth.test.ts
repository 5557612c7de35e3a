// WWW-Authenticate parsing as registries send it (distribution, Docker Hub, several challenges
// joined by Node), bounded; and the authorizer's rule that only the registry's origin gets a header.
import { DEFAULT_QUARANTINE_POLICY } from './policy.js';
import { parseChallenges, RegistryAuthorizer } from './registry-auth.js';

it.each([
  ['distribution token auth', 'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:models/m:pull"', [{ scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:models/m:pull' } }]],
  ['a scope with several actions (a comma inside quotes)', 'Bearer realm="https://a/t",scope="repository:m:pull,push"', [{ scheme: 'bearer', params: { realm: 'https://a/t', scope: 'repository:m:pull,push' } }]],
  ['htpasswd', 'Basic realm="test-registry"', [{ scheme: 'basic', params: { realm: 'test-registry' } }]],
  ['two challenges joined', 'Basic realm="r", Bearer realm="https://a/t",service=s', [{ scheme: 'basic', params: { realm: 'r' } }, { scheme: 'bearer', params: { realm: 'https://a/t', service: 's' } }]],
  ['an escaped quote', 'Bearer realm="https://a/t",error="say \\"no\\""', [{ scheme: 'bearer', params: { realm: 'https://a/t', error: 'say "no"' } }]],
  ['nothing', '', []],
  ['longer than the limit', `Bearer realm="${'x'.repeat(5000)}"`, []],
])('parses %s', (_name, header, expected) => {
  expect(parseChallenges(header)).toEqual(expected);
});

it('gives its header to the registry origin only, never to another host, port or scheme', async () => {
  const options = { ...DEFAULT_QUARANTINE_POLICY.fetch, maxBytes: 1, allowInsecureHttp: false };
  const auth = new RegistryAuthorizer(new URL('https://registry.example:5000'), { username: 'u', password: 'p', identityToken: '' }, options);
  await auth.challenge(new URL('https://registry.example:5000/v2/m/manifests/x'), 'Basic realm="r"', false, new AbortController().signal);
  expect(auth.authorization(new URL('https://registry.example:5000/v2/m/blobs/y'))).toBe(`Basic ${Buffer.from('u:p').toString('base64')}`);
  for (const other of ['https://storage.example/blob', 'https://registry.example:5001/v2/', 'http://registry.example:5000/v2/']) expect(auth.authorization(new URL(other))).toBeUndefined();
  await expect(auth.challenge(new URL('https://storage.example/blob'), 'Basic realm="r"', false, new AbortController().signal)).rejects.toMatchObject({ reason: 'HttpStatus' });
  await expect(auth.challenge(new URL('https://registry.example:5000/v2/m/manifests/x'), 'Basic realm="r"', true, new AbortController().signal)).rejects.toMatchObject({ reason: 'RegistryAuthFailed' });
});
