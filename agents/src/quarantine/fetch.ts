// Acquires an artifact over http(s) into a private staging file, with hard limits: size (declared
// and actual), total time, time without progress, number of redirects, and redirects that stay on
// the same scheme, host and port unless policy allows otherwise (https never downgrades to http
// unless the Model allows http at all). Every hop is also checked by an injected destination
// filter, which the agent backs with its egress plan. The body is written in large batches and
// hashed on a thread of its own (staging-writer.ts); a caller may follow the file as it is written.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, unlink } from 'node:fs/promises';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import type { FetchPolicy } from './policy.js';
import { openStagingWriter } from './staging-writer.js';
import { failed, passed, Reason, Stage, type ReasonCode, type StageResult } from './verdict.js';

export const MAX_URL_LENGTH = 4096;

export interface FetchOptions extends FetchPolicy {
  maxBytes: number;
  allowInsecureHttp: boolean;
  /** Whether the node may connect to this URL (its egress plan); every hop is asked. */
  allowDestination?: (url: URL) => boolean;
  /** Extra trust anchors for https (a private mirror, or tests). */
  ca?: string | Buffer;
  /** The Accept header (an OCI registry answers a manifest in the media type asked for). */
  accept?: string;
  /** The body's SHA-256, hex: checked while it streams, the file removed when it differs (OCI blobs). */
  expectSha256?: string;
  /**
   * Writes what the body holds instead of the body (an archive layer's one model file): gets the
   * body's bytes after they are counted and hashed, and the staging file; resolves with the bytes
   * it wrote. A FetchFailure-like rejection ({ reason, message }) is the stage's reason.
   */
  unpack?: (body: Readable, out: Writable) => Promise<number>;
  /** Registry authentication (registry-auth.ts): asked for each hop's Authorization header and told of a 401. */
  authorizer?: RequestAuthorizer;
  /** Told the staging file's path once it exists, before the body (not with `unpack`). */
  onStaging?: (path: string) => void;
  /** Told how many leading bytes of the staging file are written, as they land (not with `unpack`). */
  onProgress?: (writtenBytes: number) => void;
}

/** Answers an OCI registry's challenges for the requests of one pull. */
export interface RequestAuthorizer {
  /** The Authorization header for `url`, or undefined: never for an origin other than the registry's. */
  authorization(url: URL): string | undefined;
  /**
   * A 401 from `url`: gets what its WWW-Authenticate asks for (a token) so that one retry may
   * succeed, or rejects with the refusal ({ reason, message }). `retried`: this fetch was already
   * challenged once and answered.
   */
  challenge(url: URL, wwwAuthenticate: string | undefined, retried: boolean, signal: AbortSignal): Promise<void>;
}

export type SourceCheck = { ok: true; url: URL } | { ok: false; reason: ReasonCode; message: string };

/** Checks a source URL before any connection: scheme, credentials, length, control characters. */
export function checkSourceUrl(raw: string, allowInsecureHttp: boolean): SourceCheck {
  if (raw.length > MAX_URL_LENGTH) return { ok: false, reason: Reason.SourceInvalid, message: `the URL is longer than ${MAX_URL_LENGTH} characters` };
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f\s\\]/.test(raw)) return { ok: false, reason: Reason.SourceInvalid, message: 'the URL contains whitespace, control characters or backslashes' };
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, reason: Reason.SourceInvalid, message: 'the URL does not parse' };
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && allowInsecureHttp)) {
    return { ok: false, reason: Reason.SchemeNotAllowed, message: `scheme ${url.protocol} is not allowed${url.protocol === 'http:' ? ' (the Model does not allow insecure http)' : ''}` };
  }
  if (url.username || url.password) return { ok: false, reason: Reason.SourceInvalid, message: 'the URL carries credentials' };
  if (!url.hostname) return { ok: false, reason: Reason.SourceInvalid, message: 'the URL has no host' };
  return { ok: true, url };
}

export function sameOrigin(a: URL, b: URL): boolean {
  return a.protocol === b.protocol && a.hostname === b.hostname && a.port === b.port;
}

export interface FetchedFile {
  path: string;
  sizeBytes: number;
}

function isRefusal(e: unknown): e is { reason: ReasonCode; message: string } {
  return typeof e === 'object' && e !== null && typeof (e as { reason?: unknown }).reason === 'string' && typeof (e as { message?: unknown }).message === 'string';
}

export class FetchFailure extends Error {
  constructor(
    readonly reason: ReasonCode,
    message: string,
  ) {
    super(message);
  }
}

interface RequestInit {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
}

function request(url: URL, options: FetchOptions, signal: AbortSignal, onIdle: () => void, init: RequestInit = {}): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const client = url.protocol === 'https:' ? https : http;
    const headers = { 'user-agent': 'secai-quarantine', accept: options.accept ?? '*/*', ...init.headers };
    const req = client.request(url, { method: init.method ?? 'GET', signal, timeout: options.idleTimeoutMs, headers, ...(options.ca ? { ca: options.ca } : {}) }, resolve);
    // The socket's idle timer keeps running while the body streams; the error the destroyed
    // response then raises does not say why, so the caller is told first.
    req.on('timeout', () => {
      onIdle();
      req.destroy(new FetchFailure(Reason.FetchTimedOut, `no data from ${url.host} for ${options.idleTimeoutMs} ms`));
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

/**
 * One request without redirects (a registry's token realm), its body read into memory up to
 * `maxBytes`; the caller checks the URL and the destination first.
 */
export async function requestSmall(url: URL, options: FetchOptions, signal: AbortSignal, init: RequestInit, maxBytes: number): Promise<{ status: number; body: Buffer }> {
  const response = await request(url, options, signal, () => undefined, init);
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of response) {
    bytes += (chunk as Buffer).length;
    if (bytes > maxBytes) {
      response.destroy();
      throw new FetchFailure(Reason.TooLarge, `${url.host} answered more than ${maxBytes} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return { status: response.statusCode ?? 0, body: Buffer.concat(chunks) };
}

/** Follows redirects under the policy, answering one registry challenge; returns the final 200 response. */
async function openResponse(start: URL, options: FetchOptions, signal: AbortSignal, onIdle: () => void): Promise<IncomingMessage> {
  let url = start;
  let redirects = 0;
  let challenged = false;
  for (;;) {
    if (options.allowDestination && !options.allowDestination(url)) throw new FetchFailure(Reason.HostNotAllowed, `the egress policy does not allow ${url.host}`);
    // Asked again at every hop: a redirect to another origin (blob storage) gets no credential.
    const authorization = options.authorizer?.authorization(url);
    const response = await request(url, options, signal, onIdle, authorization ? { headers: { authorization } } : {});
    const status = response.statusCode ?? 0;
    if (status === 401 && options.authorizer) {
      response.resume();
      await options.authorizer.challenge(url, response.headers['www-authenticate'], challenged, signal);
      if (challenged) throw new FetchFailure(Reason.HttpStatus, `${url.host} answered HTTP 401 twice`);
      challenged = true;
      continue;
    }
    if (status >= 300 && status < 400 && response.headers.location) {
      response.resume();
      if (redirects++ >= options.maxRedirects) throw new FetchFailure(Reason.TooManyRedirects, `more than ${options.maxRedirects} redirects`);
      let next: URL;
      try {
        next = new URL(response.headers.location, url);
      } catch {
        throw new FetchFailure(Reason.RedirectNotAllowed, 'a redirect to an invalid URL');
      }
      const checked = checkSourceUrl(next.href, options.allowInsecureHttp);
      if (!checked.ok) throw new FetchFailure(Reason.RedirectNotAllowed, `redirect refused: ${checked.message}`);
      const downgrade = url.protocol === 'https:' && next.protocol === 'http:';
      if (downgrade || (!options.allowCrossOriginRedirects && !sameOrigin(url, next))) {
        throw new FetchFailure(Reason.RedirectNotAllowed, `redirect from ${url.origin} to ${next.origin} is not allowed`);
      }
      url = next;
      continue;
    }
    if (status !== 200) {
      response.resume();
      throw new FetchFailure(Reason.HttpStatus, `${url.host} answered HTTP ${status}`);
    }
    return response;
  }
}

/**
 * Downloads `source` into a new file in `stagingDir` (created 0700; the file 0600). On failure
 * the partial file is removed and the stage result says why.
 */
export async function fetchToStaging(source: string, stagingDir: string, options: FetchOptions): Promise<{ stage: StageResult; file?: FetchedFile }> {
  const checked = checkSourceUrl(source, options.allowInsecureHttp);
  if (!checked.ok) return { stage: failed(Stage.Fetch, checked.reason, checked.message) };
  await mkdir(stagingDir, { recursive: true, mode: 0o700 });
  const path = join(stagingDir, `fetch-${randomBytes(12).toString('hex')}`);
  const controller = new AbortController();
  let timedOut = false;
  let idle = false;
  const deadline = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, options.timeoutMs);
  const started = Date.now();
  let written = 0;
  try {
    const response = await openResponse(checked.url, options, controller.signal, () => (idle = true));
    const declared = Number(response.headers['content-length'] ?? NaN);
    if (Number.isFinite(declared) && declared > options.maxBytes) {
      response.destroy();
      throw new FetchFailure(Reason.TooLarge, `the server announces ${declared} bytes, more than the limit of ${options.maxBytes}`);
    }
    let fileBytes: number | undefined;
    let sha256: string | undefined;
    if (options.unpack) {
      const out = createWriteStream(path, { flags: 'wx', mode: 0o600 });
      const hash = options.expectSha256 ? createHash('sha256') : undefined;
      try {
        const body = new PassThrough();
        const unpacked = options.unpack(body, out).catch((e: unknown) => {
          response.destroy();
          body.destroy();
          throw e;
        });
        unpacked.catch(() => undefined);
        try {
          for await (const chunk of response) {
            written += (chunk as Buffer).length;
            if (written > options.maxBytes) throw new FetchFailure(Reason.TooLarge, `the body exceeds the limit of ${options.maxBytes} bytes`);
            hash?.update(chunk as Buffer);
            if (!body.write(chunk)) await once(body, 'drain');
          }
        } catch (e) {
          await unpacked;
          throw e;
        }
        body.end();
        fileBytes = await unpacked;
      } finally {
        out.end();
        await once(out, 'close');
      }
      sha256 = hash?.digest('hex');
    } else {
      // The body lands in 8 MiB batches, hashed on a thread of its own (staging-writer.ts).
      const expectedBytes = Number.isFinite(declared) ? declared : undefined;
      const writer = await openStagingWriter(path, { hash: options.expectSha256 !== undefined, ...(expectedBytes !== undefined ? { expectedBytes } : {}), ...(options.onProgress ? { onProgress: options.onProgress } : {}) });
      options.onStaging?.(path);
      try {
        for await (const chunk of response) {
          written += (chunk as Buffer).length;
          if (written > options.maxBytes) throw new FetchFailure(Reason.TooLarge, `the body exceeds the limit of ${options.maxBytes} bytes`);
          await writer.write(chunk as Buffer);
        }
        sha256 = (await writer.finish()).sha256;
      } catch (e) {
        await writer.abort();
        throw e;
      }
    }
    if (Number.isFinite(declared) && declared !== written) throw new FetchFailure(Reason.TransferFailed, `the transfer ended after ${written} of ${declared} bytes`);
    if (options.expectSha256 !== undefined && sha256 !== options.expectSha256) throw new FetchFailure(Reason.BlobDigestMismatch, `the body's SHA-256 is not ${options.expectSha256!.slice(0, 16)}..., the digest it was asked for`);
    return {
      stage: passed(Stage.Fetch, `fetched ${written} bytes in ${Date.now() - started} ms`, { sizeBytes: written, host: checked.url.host }),
      file: { path, sizeBytes: fileBytes ?? written },
    };
  } catch (e) {
    await unlink(path).catch(() => undefined);
    if (timedOut) return { stage: failed(Stage.Fetch, Reason.FetchTimedOut, `the transfer took longer than ${options.timeoutMs} ms`) };
    if (idle) return { stage: failed(Stage.Fetch, Reason.FetchTimedOut, `no data for ${options.idleTimeoutMs} ms`) };
    if (e instanceof FetchFailure) return { stage: failed(Stage.Fetch, e.reason, e.message) };
    if (isRefusal(e)) return { stage: failed(Stage.Fetch, e.reason, e.message) };
    return { stage: failed(Stage.Fetch, Reason.TransferFailed, `the transfer failed: ${(e as Error).message.slice(0, 200)}`) };
  } finally {
    clearTimeout(deadline);
  }
}
