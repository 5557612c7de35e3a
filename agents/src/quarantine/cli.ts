// secai-quarantine: the quarantine pipeline as a command, so a person can check a model before it
// ever reaches the fleet. It runs the same stages as the agent (fetch, the sandboxed one pass,
// offline signature verification, static checks) and promotes nothing.
//
//   secai-quarantine <file|url|oci://registry/repository@sha256:manifest> --sha256 HEX [--size N]
//       [--bundle F (--key PEM | --identity RE --issuer URL --trusted-root F)]
//       [--model-signature F [--model-file NAME] (--key PEM | --certificate-chain F | --identity RE --issuer URL --trusted-root F)]
//       [--registry-config CONFIG.JSON] [--allow-insecure-http] [--json]
//
// Exit status: 0 trusted, 1 rejected, 2 usage error.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runCommand } from '../exec.js';
import { credentialFor, parseDockerConfigJson } from '../../../api/docker-config.js';
import { parseOciReference } from './oci-source.js';
import type { RegistryCredential } from './registry-auth.js';
import { verifyArtifact, type ArtifactSource, type SignatureInput } from './pipeline.js';
import { DEFAULT_QUARANTINE_POLICY } from './policy.js';
import { createScannerSandbox } from './scanner-sandbox.js';
import { signaturePolicyOf, type ModelSigningMethod } from './model-signature.js';
import { isAnchoredPattern } from './signature.js';
import { composeVerdict, notRequested, Stage, type Verdict } from './verdict.js';

export const USAGE = `usage: secai-quarantine <file|url|oci://REGISTRY/REPO@sha256:MANIFEST> --sha256 HEX [--size N]
         [--bundle F (--key PEM | --identity RE --issuer URL --trusted-root F)]
         [--model-signature F [--model-file NAME]
            (--key PEM | --certificate-chain F | --identity RE --issuer URL --trusted-root F)]
         [--registry-config CONFIG.JSON] [--allow-insecure-http] [--json]
       secai-quarantine --help
exit status: 0 trusted, 1 rejected, 2 usage error`;

export interface CliRequest {
  source: ArtifactSource;
  sha256: string;
  sizeBytes?: number;
  /** A cosign bundle (`--bundle`) or an OpenSSF model signature (`--model-signature`). */
  signature?: { bundle: string; modelSigning?: { file?: string }; key?: string; certificateChain?: string; identity?: string; issuer?: string; trustedRoot?: string };
  /** A docker config.json whose auths entry for the OCI registry is the pull's credential. */
  registryConfig?: string;
  json: boolean;
}

export class UsageError extends Error {}

/** Parses the command line; pure. */
export function parseCommandLine(argv: readonly string[]): CliRequest | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        sha256: { type: 'string' },
        size: { type: 'string' },
        bundle: { type: 'string' },
        'model-signature': { type: 'string' },
        'model-file': { type: 'string' },
        'certificate-chain': { type: 'string' },
        key: { type: 'string' },
        identity: { type: 'string' },
        issuer: { type: 'string' },
        'trusted-root': { type: 'string' },
        'registry-config': { type: 'string' },
        'allow-insecure-http': { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return 'help';
  if (positionals.length !== 1) throw new UsageError('give exactly one file or URL');
  const target = positionals[0]!;
  const sha256 = values.sha256?.toLowerCase();
  if (!sha256 || !/^[0-9a-f]{64}$/.test(sha256)) throw new UsageError('--sha256 must be 64 hex digits');
  let sizeBytes: number | undefined;
  if (values.size !== undefined) {
    if (!/^[1-9][0-9]{0,15}$/.test(values.size) || !Number.isSafeInteger(Number(values.size))) throw new UsageError('--size must be a positive integer');
    sizeBytes = Number(values.size);
  }
  const keyless = [values.identity, values.issuer, values['trusted-root']];
  const anyKeyless = keyless.some((v) => v !== undefined);
  const bundle = values.bundle ?? values['model-signature'];
  const oms = values['model-signature'] !== undefined;
  if (values.bundle !== undefined && oms) throw new UsageError('give either --bundle or --model-signature, not both');
  if (bundle === undefined && (values.key !== undefined || anyKeyless || values['certificate-chain'] !== undefined)) {
    throw new UsageError('--key, --certificate-chain, --identity, --issuer and --trusted-root need --bundle or --model-signature');
  }
  if (!oms && values['certificate-chain'] !== undefined) throw new UsageError('--certificate-chain needs --model-signature');
  if (!oms && values['model-file'] !== undefined) throw new UsageError('--model-file needs --model-signature');
  let signature: CliRequest['signature'];
  if (bundle !== undefined) {
    const methods = [values.key !== undefined, values['certificate-chain'] !== undefined, anyKeyless].filter(Boolean).length;
    if (methods > 1) throw new UsageError('give one of --key, --certificate-chain or --identity/--issuer/--trusted-root');
    if (values.key !== undefined) signature = { bundle, key: values.key };
    else if (values['certificate-chain'] !== undefined) signature = { bundle, certificateChain: values['certificate-chain'] };
    else if (keyless.every((v) => v !== undefined)) {
      if (!isAnchoredPattern(values.identity!)) throw new UsageError('--identity must be anchored: start with ^ and end with $');
      signature = { bundle, identity: values.identity!, issuer: values.issuer!, trustedRoot: values['trusted-root']! };
    } else throw new UsageError(`${oms ? '--model-signature' : '--bundle'} needs --key${oms ? ', --certificate-chain' : ''}, or all of --identity, --issuer and --trusted-root`);
    if (oms) signature.modelSigning = values['model-file'] !== undefined ? { file: values['model-file'] } : {};
  }
  const isUrl = /^https?:\/\//i.test(target);
  let source: ArtifactSource;
  if (target.startsWith('oci://')) {
    const oci = parseOciReference(target, values['allow-insecure-http']);
    if (!oci) throw new UsageError('an OCI source is oci://REGISTRY/REPOSITORY@sha256:DIGEST (the manifest digest)');
    source = { kind: 'oci', oci };
  } else source = isUrl ? { kind: 'url', url: target, allowInsecureHttp: values['allow-insecure-http'] } : { kind: 'file', path: target };
  if (values['registry-config'] !== undefined && source.kind !== 'oci') throw new UsageError('--registry-config needs an oci:// source');
  const request: CliRequest = { source, sha256, json: values.json };
  if (values['registry-config'] !== undefined) request.registryConfig = values['registry-config'];
  if (sizeBytes !== undefined) request.sizeBytes = sizeBytes;
  if (signature) request.signature = signature;
  return request;
}

async function signatureInput(signature: NonNullable<CliRequest['signature']>): Promise<SignatureInput> {
  const bundleJson = await readFile(signature.bundle, 'utf8');
  let method: ModelSigningMethod;
  if (signature.key !== undefined) method = { kind: 'key', publicKeyPem: await readFile(signature.key, 'utf8') };
  else if (signature.certificateChain !== undefined) method = { kind: 'certificate', certificateChainPem: await readFile(signature.certificateChain, 'utf8') };
  else method = { kind: 'sigstore', issuer: signature.issuer!, subjectPattern: signature.identity!, trustedRootJson: await readFile(signature.trustedRoot!, 'utf8') };
  const policy = signaturePolicyOf(method, signature.modelSigning);
  if (!policy) throw new UsageError('--certificate-chain needs --model-signature');
  return { bundleJson, policy };
}

/** The auths entry of a docker config.json for `registry`; an unreadable file or no entry is a usage error. */
async function registryCredential(path: string, registry: string): Promise<RegistryCredential> {
  const parsed = parseDockerConfigJson(await readFile(path));
  if (!parsed.ok) throw new UsageError(`${path}: ${parsed.message}`);
  const credential = credentialFor(parsed.auths, registry);
  if (!credential) throw new UsageError(`${path} has no auths entry for ${registry} (credential helpers and credsStore are not read)`);
  return credential;
}

/** Runs the check; the verdict's Promotion stage is always "not requested". */
export async function checkArtifact(request: CliRequest): Promise<Verdict> {
  let source = request.source;
  if (request.registryConfig !== undefined && source.kind === 'oci') source = { kind: 'oci', oci: { ...source.oci, credential: await registryCredential(request.registryConfig, source.oci.registry) } };
  const stagingDir = await mkdtemp(join(tmpdir(), 'secai-quarantine-'));
  try {
    const policy = DEFAULT_QUARANTINE_POLICY;
    const sandbox = createScannerSandbox({ exec: runCommand, policy: policy.scanner });
    const input = { source, pin: { sha256: request.sha256, sizeBytes: request.sizeBytes ?? 0 }, policy };
    const verified = await verifyArtifact(request.signature ? { ...input, signature: await signatureInput(request.signature) } : input, { sandbox, stagingDir });
    const results = [...verified.results, notRequested(Stage.Promotion, 'check only: nothing is promoted')];
    return composeVerdict(results, verified.facts ? { sha256: verified.facts.sha256, sizeBytes: verified.facts.sizeBytes } : {});
  } finally {
    await rm(stagingDir, { recursive: true, force: true });
  }
}

export function formatVerdict(verdict: Verdict): string {
  const lines = verdict.stages.map((s) => `${s.status.padEnd(7)} ${s.stage.padEnd(10)} ${s.reason.padEnd(22)} ${s.message}`);
  lines.push(verdict.trusted ? `TRUSTED ${verdict.sha256 ?? ''}`.trim() : `REJECTED at ${verdict.stage}: ${verdict.reason} (${verdict.message})`);
  return `${lines.join('\n')}\n`;
}

/** The command; returns the exit status. */
export async function main(argv: readonly string[], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  let request: CliRequest;
  try {
    const parsed = parseCommandLine(argv);
    if (parsed === 'help') {
      out.write(`${USAGE}\n`);
      return 0;
    }
    request = parsed;
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    err.write(`secai-quarantine: ${e.message}\n${USAGE}\n`);
    return 2;
  }
  let verdict: Verdict;
  try {
    verdict = await checkArtifact(request);
  } catch (e) {
    // Unreadable signature material or registry config is the user's input error, not the artifact's verdict.
    err.write(`secai-quarantine: ${(e as Error).message}\n`);
    return 2;
  }
  out.write(request.json ? `${JSON.stringify(verdict, null, 2)}\n` : formatVerdict(verdict));
  return verdict.trusted ? 0 : 1;
}
