// Sealing and unsealing a secret to a PCR policy with tpm2-tools, for tests and the lab only: the
// agent never unseals (unlock is local-console only). The sealed object is kept as the
// systemd-tpm2 token keeps it: TPM2B_PRIVATE || TPM2B_PUBLIC, under the owner's ECC primary key.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runChecked, runCommand, type ExecResult } from '../../agents/src/exec.js';

export interface SealedSecret {
  /** TPM2B_PRIVATE || TPM2B_PUBLIC, as in a systemd-tpm2 token's tpm2-blob. */
  blob: Buffer;
  privatePart: Buffer;
  publicPart: Buffer;
  /** The policy digest the object is bound to. */
  policy: Buffer;
}

function tools(tcti: string) {
  const env = { ...process.env, TPM2TOOLS_TCTI: tcti };
  const attempt = (command: string, args: string[], cwd: string): Promise<ExecResult> => runCommand(command, args, { env, cwd, timeoutMs: 10_000 });
  // Without a resource manager every tool leaves its objects loaded, and swtpm holds only three:
  // flush after each step (the next step reloads what it needs from the saved context files).
  const flush = async (cwd: string) => {
    await attempt('tpm2_flushcontext', ['-t'], cwd);
    await attempt('tpm2_flushcontext', ['-s'], cwd);
  };
  const run = async (command: string, args: string[], cwd: string) => {
    try {
      return await runChecked(runCommand, command, args, { env, cwd, timeoutMs: 10_000 });
    } finally {
      if (command !== 'tpm2_startauthsession') await flush(cwd);
    }
  };
  return { run, attempt, flush };
}

async function inWorkDir<T>(work: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'secai-tpm2-'));
  try {
    return await work(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The policy digest of PolicyPCR over `bank:pcrs`, from a trial session; with a values file when given. */
export async function trialPolicyPcr(tcti: string, bank: string, pcrs: number[], values?: Buffer[]): Promise<Buffer> {
  const { run, flush } = tools(tcti);
  return inWorkDir(async (dir) => {
    const args = ['-S', 'session.ctx', '-l', `${bank}:${pcrs.join(',')}`, '-L', 'policy.bin'];
    if (values) {
      await writeFile(join(dir, 'pcrs.bin'), Buffer.concat(values));
      args.push('-f', 'pcrs.bin');
    }
    try {
      await run('tpm2_startauthsession', ['-S', 'session.ctx'], dir);
      await run('tpm2_policypcr', args, dir);
      return await readFile(join(dir, 'policy.bin'));
    } finally {
      await flush(dir);
    }
  });
}

/** Seals `secret` to the current values of `bank:pcrs`; only a PCR policy session can unseal it. */
export async function sealToPcrs(tcti: string, secret: Buffer, bank: string, pcrs: number[]): Promise<SealedSecret> {
  const policy = await trialPolicyPcr(tcti, bank, pcrs);
  const { run, flush } = tools(tcti);
  return inWorkDir(async (dir) => {
    await writeFile(join(dir, 'policy.bin'), policy);
    await writeFile(join(dir, 'secret.bin'), secret, { mode: 0o600 });
    try {
      await run('tpm2_createprimary', ['-C', 'o', '-G', 'ecc', '-c', 'primary.ctx'], dir);
      await run('tpm2_create', ['-C', 'primary.ctx', '-L', 'policy.bin', '-a', 'fixedtpm|fixedparent', '-i', 'secret.bin', '-u', 'seal.pub', '-r', 'seal.priv'], dir);
    } finally {
      await flush(dir);
    }
    const privatePart = await readFile(join(dir, 'seal.priv'));
    const publicPart = await readFile(join(dir, 'seal.pub'));
    return { blob: Buffer.concat([privatePart, publicPart]), privatePart, publicPart, policy };
  });
}

/** Unseals with a PCR policy session; rejects with tpm2-tools' message (0x99D: a policy check failed). */
export async function unsealWithPcrs(tcti: string, sealed: SealedSecret, bank: string, pcrs: number[]): Promise<Buffer> {
  const { run, flush } = tools(tcti);
  return inWorkDir(async (dir) => {
    await writeFile(join(dir, 'seal.priv'), sealed.privatePart);
    await writeFile(join(dir, 'seal.pub'), sealed.publicPart);
    try {
      await run('tpm2_createprimary', ['-C', 'o', '-G', 'ecc', '-c', 'primary.ctx'], dir);
      await run('tpm2_load', ['-C', 'primary.ctx', '-u', 'seal.pub', '-r', 'seal.priv', '-c', 'seal.ctx'], dir);
      await run('tpm2_unseal', ['-c', 'seal.ctx', '-p', `pcr:${bank}:${pcrs.join(',')}`, '-o', 'out.bin'], dir);
      return await readFile(join(dir, 'out.bin'));
    } finally {
      await flush(dir);
    }
  });
}

/** Extends one PCR with a digest (hex of the bank's size). */
export async function extendPcrOnTpm(tcti: string, bank: string, pcr: number, digest: Buffer): Promise<void> {
  await tools(tcti).run('tpm2_pcrextend', [`${pcr}:${bank}=${digest.toString('hex')}`], tmpdir());
}
