// The node's side of remote attestation, through tpm2-tools: its endorsement key (EK) and EK
// certificate, an attestation key (AK) created once under the EK and kept at a persistent handle,
// credential activation for the operator's enrolment challenge, and quotes over the operator's
// nonces. The agent decides nothing here: it hands TPM structures to the operator, which verifies
// them. TPM commands run one at a time (without a resource manager, concurrent tools would fight
// over the TPM's few object and session slots).
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runCommand, type Exec } from '../exec.js';
import { bankAlgorithm } from './pcr-policy.js';

export interface TpmIdentity {
  ekPublic: Buffer;
  ekCertificate?: Buffer;
  akPublic: Buffer;
  /** Whether the AK was created now (first enrolment on this TPM). */
  akCreated: boolean;
}

export interface TpmQuote {
  attest: Buffer;
  signature: Buffer;
  pcrValues: { index: number; value: Buffer }[];
}

export interface AttestationTpm {
  identity(): Promise<TpmIdentity>;
  activateCredential(credentialBlob: Buffer, encryptedSecret: Buffer): Promise<Buffer>;
  quote(nonce: Buffer, bank: string, pcrs: readonly number[]): Promise<TpmQuote>;
}

export interface AttestationTpmOptions {
  tcti: string;
  /** Scratch files for tpm2-tools (inside the agent's state directory). */
  workDir: string;
  /** The TCG-registered persistent handle of the RSA EK (TCG EK Credential Profile). */
  ekHandle?: string;
  /** Where the AK is kept (owner hierarchy, persistent). */
  akHandle?: string;
  /** The NV index of the RSA 2048 EK certificate (TCG EK Credential Profile). */
  ekCertificateIndex?: string;
  exec?: Exec;
}

export const DEFAULT_EK_HANDLE = '0x81010001';
export const DEFAULT_AK_HANDLE = '0x81010002';
export const DEFAULT_EK_CERTIFICATE_INDEX = '0x01c00002';

const TPM_COMMAND_TIMEOUT_MS = 10_000;
const MAX_STRUCTURE_BYTES = 16 * 1024;
/** TPM2_CC_MakeCredential's seed for an RSA-2048 EK, plus the blob's sizes: generous. */
const MAX_CREDENTIAL_INPUT = 2048;
const MAX_NONCE = 64;

export class TpmRefusedError extends Error {
  override name = 'TpmRefusedError';
}

const CREDENTIAL_FILE_MAGIC = 0xbadcc0de;

export function tpm2ToolsAttestation(options: AttestationTpmOptions): AttestationTpm {
  const exec = options.exec ?? runCommand;
  const ekHandle = options.ekHandle ?? DEFAULT_EK_HANDLE;
  const akHandle = options.akHandle ?? DEFAULT_AK_HANDLE;
  const ekCertificateIndex = options.ekCertificateIndex ?? DEFAULT_EK_CERTIFICATE_INDEX;
  const env = { ...process.env, TPM2TOOLS_TCTI: options.tcti };
  let queue: Promise<unknown> = Promise.resolve();
  const serialized = <T>(work: () => Promise<T>): Promise<T> => {
    const run = queue.then(work, work);
    queue = run.catch(() => undefined);
    return run;
  };

  const attempt = (cwd: string, command: string, args: string[]) =>
    exec(command, args, { env, cwd, timeoutMs: TPM_COMMAND_TIMEOUT_MS, maxOutputBytes: 64 * 1024 });
  const run = async (cwd: string, command: string, args: string[]) => {
    const result = await attempt(cwd, command, args);
    if (result.code !== 0) {
      const why = result.timedOut ? 'timed out' : result.stderr.replace(/WARN:.*\n?/g, '').trim().slice(0, 400) || `exit ${result.code}`;
      throw new TpmRefusedError(`${command}: ${why}`);
    }
    return result;
  };
  const readBounded = async (path: string, what: string) => {
    const bytes = await readFile(path);
    if (bytes.length > MAX_STRUCTURE_BYTES) throw new TpmRefusedError(`${what} from tpm2-tools is ${bytes.length} bytes`);
    return bytes;
  };
  const inWorkDir = <T>(work: (dir: string) => Promise<T>) =>
    serialized(async () => {
      const dir = await mkdtemp(join(options.workDir, 'tpm-'));
      try {
        return await work(dir);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

  return {
    identity: () =>
      inWorkDir(async (dir) => {
        // The EK: persisted by the platform (or by swtpm_setup); made from the default template otherwise.
        if ((await attempt(dir, 'tpm2_readpublic', ['-c', ekHandle, '-o', 'ek.pub'])).code !== 0) {
          await run(dir, 'tpm2_createek', ['-c', ekHandle, '-G', 'rsa', '-u', 'ek.pub']);
        }
        const ekPublic = await readBounded(join(dir, 'ek.pub'), 'the EK public area');
        const cert = await attempt(dir, 'tpm2_nvread', [ekCertificateIndex, '-o', 'ek.crt']);
        const ekCertificate = cert.code === 0 ? await readBounded(join(dir, 'ek.crt'), 'the EK certificate') : undefined;
        let akCreated = false;
        if ((await attempt(dir, 'tpm2_readpublic', ['-c', akHandle, '-o', 'ak.pub'])).code !== 0) {
          try {
            await run(dir, 'tpm2_createak', ['-C', ekHandle, '-c', 'ak.ctx', '-G', 'rsa', '-g', 'sha256', '-s', 'rsassa', '-u', 'ak.pub', '-n', 'ak.name']);
            await run(dir, 'tpm2_evictcontrol', ['-C', 'o', '-c', 'ak.ctx', akHandle]);
          } finally {
            await attempt(dir, 'tpm2_flushcontext', ['-t']);
            await attempt(dir, 'tpm2_flushcontext', ['-s']);
          }
          akCreated = true;
        }
        const akPublic = await readBounded(join(dir, 'ak.pub'), 'the AK public area');
        return { ekPublic, ...(ekCertificate && ekCertificate.length > 0 ? { ekCertificate } : {}), akPublic, akCreated };
      }),

    activateCredential: (credentialBlob, encryptedSecret) =>
      inWorkDir(async (dir) => {
        if (credentialBlob.length > MAX_CREDENTIAL_INPUT || encryptedSecret.length > MAX_CREDENTIAL_INPUT) {
          throw new TpmRefusedError('the credential is larger than any the TPM makes');
        }
        const header = Buffer.alloc(8);
        header.writeUInt32BE(CREDENTIAL_FILE_MAGIC, 0);
        header.writeUInt32BE(1, 4);
        await writeFile(join(dir, 'credential'), Buffer.concat([header, credentialBlob, encryptedSecret]));
        // The EK's authorisation is a policy: PolicySecret with the endorsement hierarchy.
        try {
          await run(dir, 'tpm2_startauthsession', ['--policy-session', '-S', 'session.ctx']);
          await run(dir, 'tpm2_policysecret', ['-S', 'session.ctx', '-c', 'e']);
          await run(dir, 'tpm2_activatecredential', ['-c', akHandle, '-C', ekHandle, '-i', 'credential', '-o', 'secret', '-P', 'session:session.ctx']);
        } finally {
          await attempt(dir, 'tpm2_flushcontext', ['-s']);
        }
        return readBounded(join(dir, 'secret'), 'the activated secret');
      }),

    quote: (nonce, bank, pcrs) =>
      inWorkDir(async (dir) => {
        const { bytes } = bankAlgorithm(bank);
        const sorted = [...new Set(pcrs)].sort((a, b) => a - b);
        if (nonce.length === 0 || nonce.length > MAX_NONCE) throw new TpmRefusedError(`a nonce of ${nonce.length} bytes`);
        if (sorted.length === 0 || sorted.some((p) => !Number.isInteger(p) || p < 0 || p > 23)) throw new TpmRefusedError(`PCR selection ${pcrs.join(',')}`);
        await run(dir, 'tpm2_quote', [
          '-c', akHandle, '-l', `${bank}:${sorted.join(',')}`, '-q', nonce.toString('hex'),
          '-m', 'quote.msg', '-s', 'quote.sig', '-o', 'quote.pcrs', '-F', 'values', '-g', 'sha256',
        ]);
        const values = await readBounded(join(dir, 'quote.pcrs'), 'the quoted PCR values');
        if (values.length !== sorted.length * bytes) throw new TpmRefusedError(`tpm2_quote wrote ${values.length} bytes of PCR values for ${sorted.length} PCRs`);
        return {
          attest: await readBounded(join(dir, 'quote.msg'), 'the quote'),
          signature: await readBounded(join(dir, 'quote.sig'), 'the quote signature'),
          pcrValues: sorted.map((index, i) => ({ index, value: values.subarray(i * bytes, (i + 1) * bytes) })),
        };
      }),
  };
}

/** Where the kernel exposes the firmware's boot event log. */
export const DEFAULT_EVENT_LOG = '/sys/kernel/security/tpm0/binary_bios_measurements';
/** The operator parses at most 2 MiB of log; a node does not send more. */
export const MAX_EVENT_LOG_BYTES = 2 * 1024 * 1024;

export type BootEventLog = { log: Buffer } | { error: string } | { absent: true };

/**
 * Reads the boot event log, at most `maxBytes` (securityfs reports size 0, so the file is read in
 * chunks until its end). No file is no log; anything else that fails is said.
 */
export async function readBootEventLog(path: string, maxBytes = MAX_EVENT_LOG_BYTES): Promise<BootEventLog> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { absent: true };
    return { error: `cannot open ${path}: ${code ?? (err as Error).message}` };
  }
  try {
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.alloc(64 * 1024);
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > maxBytes) return { error: `the event log exceeds ${maxBytes} bytes` };
      chunks.push(chunk.subarray(0, bytesRead));
    }
    return total === 0 ? { absent: true } : { log: Buffer.concat(chunks) };
  } catch (err) {
    return { error: `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
  } finally {
    await handle.close();
  }
}
