// Registry credentials in a docker config.json: a Secret of type kubernetes.io/dockerconfigjson (what
// `kubectl create secret docker-registry` writes, read by the operator) or `secai-quarantine
// --registry-config`. `auths` maps a registry to `auth` (base64 user:password), or `username` and
// `password`, or `identitytoken` (an OAuth2 refresh token). Pure; no message here names a value.

export const DOCKER_CONFIG_JSON_TYPE = 'kubernetes.io/dockerconfigjson';
export const DOCKER_CONFIG_JSON_KEY = '.dockerconfigjson';

export const PULL_SECRET_LIMITS = {
  /** A config with a few dozen registries is a few KiB. */
  configBytes: 64 * 1024,
  registries: 256,
  /** Cloud registries' passwords are short-lived tokens of a few KiB. */
  fieldBytes: 16 * 1024,
} as const;

export interface RegistryAuth {
  username: string;
  password: string;
  identityToken: string;
}

/** A pull Secret as parsed: its credentials by registry host[:port], or why they cannot be read. */
export type PullSecretAuths = { ok: true; auths: Record<string, RegistryAuth> } | { ok: false; message: string };

/** `https://index.docker.io/v1/`, `registry.example.com:5000/`, `REGISTRY.example.com` → host[:port], lowercase. */
export function registryKey(key: string): string {
  return key.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').split('/')[0]!.toLowerCase();
}

/** Docker Hub is named three ways (its config key is the v1 index). */
const DOCKER_HUB = ['docker.io', 'index.docker.io', 'registry-1.docker.io'];

function field(entry: Record<string, unknown>, name: string): string | undefined | false {
  const value = entry[name];
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string' || Buffer.byteLength(value) > PULL_SECRET_LIMITS.fieldBytes) return false;
  return value;
}

/** Parses `.dockerconfigjson` (bytes as stored); messages name registries and fields, never values. */
export function parseDockerConfigJson(bytes: Buffer, limits = PULL_SECRET_LIMITS): PullSecretAuths {
  if (bytes.length > limits.configBytes) return { ok: false, message: `${DOCKER_CONFIG_JSON_KEY} has more than ${limits.configBytes} bytes` };
  let config: unknown;
  try {
    config = JSON.parse(bytes.toString('utf8'));
  } catch {
    return { ok: false, message: `${DOCKER_CONFIG_JSON_KEY} is not JSON` };
  }
  const auths = (config as { auths?: unknown } | null)?.auths;
  if (typeof auths !== 'object' || auths === null || Array.isArray(auths)) return { ok: false, message: `${DOCKER_CONFIG_JSON_KEY} has no auths object` };
  const entries = Object.entries(auths as Record<string, unknown>);
  if (entries.length > limits.registries) return { ok: false, message: `${DOCKER_CONFIG_JSON_KEY} names more than ${limits.registries} registries` };
  const out: Record<string, RegistryAuth> = {};
  for (const [key, value] of entries) {
    const registry = registryKey(key);
    const where = `the auths entry for ${registry.slice(0, 253)}`;
    if (typeof value !== 'object' || value === null) return { ok: false, message: `${where} is not an object` };
    const entry = value as Record<string, unknown>;
    const [auth, username, password, identityToken] = ['auth', 'username', 'password', 'identitytoken'].map((f) => field(entry, f));
    if ([auth, username, password, identityToken].includes(false)) return { ok: false, message: `${where} has a field that is not a string of at most ${limits.fieldBytes} bytes` };
    let user = username || '';
    let pass = password || '';
    if (!user && !pass && auth) {
      // base64 of user:password; the password may itself hold colons.
      const decoded = Buffer.from(auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon <= 0) return { ok: false, message: `${where}: auth is not base64 of user:password` };
      user = decoded.slice(0, colon);
      pass = decoded.slice(colon + 1);
    }
    if (Boolean(user) !== Boolean(pass)) return { ok: false, message: `${where} has a username without a password or a password without a username` };
    if (!user && !identityToken) return { ok: false, message: `${where} holds no credential (auth, username and password, or identitytoken)` };
    out[registry] = { username: user, password: pass, identityToken: identityToken || '' };
  }
  return { ok: true, auths: out };
}

/** The credential for `registry` (host[:port] as in the Model), if the config has one. */
export function credentialFor(auths: Record<string, RegistryAuth>, registry: string): RegistryAuth | undefined {
  const host = registry.toLowerCase();
  const direct = auths[host];
  if (direct) return direct;
  if (DOCKER_HUB.includes(host)) for (const alias of DOCKER_HUB) if (auths[alias]) return auths[alias];
  return undefined;
}
