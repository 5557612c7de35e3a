// The node's TPM through tpm2-tools: whether one answers, and its PCR values. The TCTI selects the
// TPM (the kernel resource manager on a host, `swtpm:host=127.0.0.1,port=N` in tests and the lab).
import { runCommand, type Exec } from '../exec.js';
import { parsePcrRead } from './pcr-policy.js';

export interface TpmClient {
  isPresent(): Promise<boolean>;
  readPcrs(bank: string, pcrs: readonly number[]): Promise<Map<number, Buffer>>;
}

/** SecAI OS gives each TPM command 5 s. */
const TPM_COMMAND_TIMEOUT_MS = 5_000;

export class Tpm2ToolsError extends Error {
  override name = 'Tpm2ToolsError';
}

export function tpm2ToolsClient(tcti: string, exec: Exec = runCommand): TpmClient {
  const env = { ...process.env, TPM2TOOLS_TCTI: tcti };
  const run = (command: string, args: string[]) => exec(command, args, { env, timeoutMs: TPM_COMMAND_TIMEOUT_MS, maxOutputBytes: 64 * 1024 });
  return {
    async isPresent() {
      const result = await run('tpm2_getcap', ['properties-fixed']).catch(() => undefined);
      return result?.code === 0 && result.stdout.includes('TPM2_PT_FAMILY_INDICATOR');
    },
    async readPcrs(bank, pcrs) {
      if (pcrs.length === 0) return new Map();
      const result = await run('tpm2_pcrread', [`${bank}:${pcrs.join(',')}`]);
      if (result.code !== 0) throw new Tpm2ToolsError(`tpm2_pcrread failed: ${result.stderr.trim().slice(0, 300) || `exit ${result.code}`}`);
      const values = parsePcrRead(result.stdout, bank);
      const missing = pcrs.filter((p) => !values.has(p));
      if (missing.length > 0) throw new Tpm2ToolsError(`the TPM has no ${bank} value for PCR ${missing.join(',')}`);
      return values;
    },
  };
}
