// Registry authentication for one OCI pull, as Docker and CNCF distribution do it: a request without
// credentials first; on 401, `WWW-Authenticate: Basic` is answered with the username and password,
// `Bearer realm=…,service=…,scope=…` with a token from the realm (a GET with Basic credentials, or a
// POST of the identity token as an OAuth2 refresh token), and the request is retried once. A Bearer
// challenge without a credential gets an anonymous token, as public repositories hand out.
// What keeps the credential where it belongs:
// - the Authorization header goes only to the registry's own origin: a redirect elsewhere (blob
//   storage) gets none, and a 401 from elsewhere is not answered;
// - the token realm is a destination like any other: its URL passes the same checks and the egress
//   policy, and it is asked without redirects;
// - over plain http a credential goes only to the registry itself, and only when the Model allows
//   that registry insecure http; a realm on another origin must be https;
// - no message names the credential or a token, and nothing here logs.
import { checkSourceUrl, FetchFailure, requestSmall, sameOrigin, type FetchOptions, type RequestAuthorizer } from './fetch.js';
import { Reason } from './verdict.js';

export interface RegistryCredential {
  username: string;
  password: string;
  /** An OAuth2 refresh token (docker config identitytoken). */
  identityToken: string;
}

export const REGISTRY_AUTH_LIMITS = {
  challengeChars: 4096,
  /** A token answer with an x5c chain is a few KiB. */
  tokenResponseBytes: 64 * 1024,
  tokenChars: 32 * 1024,
} as const;

export interface Challenge {
  /** Lowercase: basic, bearer. */
  scheme: string;
  params: Record<string, string>;
}

const PARAM = /\s*,?\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)(?:\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*)))?/y;

/** The challenges of a WWW-Authenticate header (Node joins several with ", "); pure. */
export function parseChallenges(header: string, limits = REGISTRY_AUTH_LIMITS): Challenge[] {
  if (header.length > limits.challengeChars) return [];
  const out: Challenge[] = [];
  PARAM.lastIndex = 0;
  for (let m = PARAM.exec(header); m; m = PARAM.exec(header)) {
    const [, name, quoted, bare] = m;
    if (quoted === undefined && bare === undefined) out.push({ scheme: name!.toLowerCase(), params: {} });
    else if (out.length > 0) out[out.length - 1]!.params[name!.toLowerCase()] = quoted !== undefined ? quoted.replace(/\\(.)/g, '$1') : bare!;
    if (PARAM.lastIndex >= header.length) break;
  }
  return out;
}

const TOKEN = /^[\x21-\x7e]+$/;

export class RegistryAuthorizer implements RequestAuthorizer {
  private header: string | undefined;
  private readonly basic: string | undefined;

  /** `registry`: the registry's origin (https://host:port, or http:// when the Model allows it). */
  constructor(
    private readonly registry: URL,
    private readonly credential: RegistryCredential | undefined,
    private readonly options: FetchOptions,
  ) {
    if (credential?.username) this.basic = `Basic ${Buffer.from(`${credential.username}:${credential.password}`).toString('base64')}`;
  }

  authorization(url: URL): string | undefined {
    return sameOrigin(url, this.registry) ? this.header : undefined;
  }

  private refused(why: string): FetchFailure {
    return this.credential ? new FetchFailure(Reason.RegistryAuthFailed, `${this.registry.host} refused the credential: ${why}`) : new FetchFailure(Reason.RegistryAuthRequired, `${this.registry.host} requires a credential (no pull secret given): ${why}`);
  }

  async challenge(url: URL, wwwAuthenticate: string | undefined, retried: boolean, signal: AbortSignal): Promise<void> {
    if (!sameOrigin(url, this.registry)) throw new FetchFailure(Reason.HttpStatus, `${url.host}, not the registry, answered HTTP 401; the credential goes to the registry only`);
    if (retried) throw this.refused('HTTP 401 again after authenticating');
    const challenges = parseChallenges(wwwAuthenticate ?? '');
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    if (bearer) {
      this.header = `Bearer ${await this.token(bearer.params, signal)}`;
      return;
    }
    if (challenges.some((c) => c.scheme === 'basic')) {
      if (!this.basic) throw this.credential ? this.refused('it asks for Basic authentication and the credential is only an identity token') : this.refused('it asks for Basic authentication');
      this.header = this.basic;
      return;
    }
    throw this.refused('HTTP 401 without a Basic or Bearer challenge');
  }

  private async token(params: Record<string, string>, signal: AbortSignal): Promise<string> {
    const checked = checkSourceUrl(params.realm ?? '', this.options.allowInsecureHttp);
    if (!checked.ok) throw new FetchFailure(checked.reason, `the token realm of ${this.registry.host}: ${checked.message}`);
    const realm = checked.url;
    if (this.options.allowDestination && !this.options.allowDestination(realm)) throw new FetchFailure(Reason.HostNotAllowed, `the token realm ${realm.host} (from the challenge of ${this.registry.host}) is not allowed by the egress policy`);
    if (this.credential && realm.protocol === 'http:' && !sameOrigin(realm, this.registry)) {
      throw new FetchFailure(Reason.SchemeNotAllowed, `the token realm ${realm.origin} would get the credential over plain http; only the registry itself may, and a realm elsewhere must be https`);
    }
    const form = new URLSearchParams();
    if (params.service) form.set('service', params.service);
    if (params.scope) form.set('scope', params.scope);
    let answer;
    if (this.credential?.identityToken) {
      form.set('grant_type', 'refresh_token');
      form.set('client_id', 'secai-quarantine');
      form.set('refresh_token', this.credential.identityToken);
      answer = await requestSmall(realm, this.options, signal, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString() }, REGISTRY_AUTH_LIMITS.tokenResponseBytes);
    } else {
      for (const [k, v] of form) realm.searchParams.append(k, v);
      answer = await requestSmall(realm, this.options, signal, this.basic ? { headers: { authorization: this.basic } } : {}, REGISTRY_AUTH_LIMITS.tokenResponseBytes);
    }
    if (answer.status === 401 || answer.status === 403) throw this.refused(`the token realm ${realm.host} answered HTTP ${answer.status}`);
    if (answer.status !== 200) throw new FetchFailure(Reason.HttpStatus, `the token realm ${realm.host} answered HTTP ${answer.status}`);
    let body: { token?: unknown; access_token?: unknown } | undefined;
    try {
      body = JSON.parse(answer.body.toString('utf8')) as typeof body;
    } catch {
      body = undefined;
    }
    const token = body?.token ?? body?.access_token;
    if (typeof token !== 'string' || token.length > REGISTRY_AUTH_LIMITS.tokenChars || !TOKEN.test(token)) {
      throw new FetchFailure(Reason.RegistryAuthFailed, `the token realm ${realm.host} answered without a usable token`);
    }
    return token;
  }
}
