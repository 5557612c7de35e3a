// secai-audit: offline verification of a node's audit log by an auditor, without the operator.
//   secai-audit verify <log dir> [--head F] [--json]
// Exit 0 when the log is valid, 1 when it is not, 2 on a usage error or an unreadable --head file.
import { readFile } from 'node:fs/promises';
import { verifiedHeadFromJson, type VerifiedHead } from '../../../api/audit/tree-head.js';
import { verifyLogDirectory, type LogVerification } from './verify-log-directory.js';

export const USAGE = `usage: secai-audit verify <log dir> [--head FILE] [--json]

Recomputes the Merkle tree of a node's audit log from its entries, checks every signed tree head
stored in the log against it and the node's public key, and, with --head, checks that the log still
contains the head kept in FILE ({"treeSize", "rootHash", "keyFingerprint"}, as printed under
"verifiedHead" by --json).
Exit status: 0 valid, 1 invalid, 2 usage error.`;

/** Largest --head file read: the JSON of one head is about 200 bytes. */
const MAX_HEAD_FILE_BYTES = 64 * 1024;

interface Output {
  out: (text: string) => void;
  err: (text: string) => void;
}

function parseArgs(args: readonly string[]): { dir: string; headFile?: string; json: boolean } | string {
  const [command, ...rest] = args;
  if (command !== 'verify') return command === undefined ? 'missing command' : `unknown command ${JSON.stringify(command)}`;
  let dir: string | undefined;
  let headFile: string | undefined;
  let json = false;
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    if (arg === '--json') json = true;
    else if (arg === '--head') {
      headFile = rest[++i];
      if (headFile === undefined) return '--head needs a file';
    } else if (arg.startsWith('--head=')) headFile = arg.slice('--head='.length);
    else if (arg.startsWith('-')) return `unknown option ${arg}`;
    else if (dir === undefined) dir = arg;
    else return `unexpected argument ${JSON.stringify(arg)}`;
  }
  if (dir === undefined) return 'missing <log dir>';
  return { dir, ...(headFile === undefined ? {} : { headFile }), json };
}

async function readHeadFile(path: string): Promise<VerifiedHead> {
  const text = await readFile(path);
  if (text.length > MAX_HEAD_FILE_BYTES) throw new Error(`${path} is larger than ${MAX_HEAD_FILE_BYTES} bytes`);
  return verifiedHeadFromJson(JSON.parse(text.toString('utf8')));
}

function describe(result: LogVerification): string {
  const lines = [
    `${result.valid ? 'VALID' : 'INVALID'}: ${result.dir}`,
    `  entries: ${result.treeSize} in ${result.segments} segment(s), root ${result.rootHash}`,
    `  node key: ${result.keyFingerprint ?? 'missing'}`,
    `  signed heads checked: ${result.headsChecked}${result.externalHeadChecked ? ', plus the kept head' : ''}`,
  ];
  if (result.unterminatedTail) lines.push('  note: an unterminated last line (a write in progress or torn) was left out');
  for (const failure of result.failures) lines.push(`  ${failure.code}: ${failure.message}`);
  if (result.failureCount > result.failures.length) lines.push(`  ... ${result.failureCount - result.failures.length} more failures`);
  if (result.verifiedHead) lines.push(`  keep this head for the next verification: ${JSON.stringify(result.verifiedHead)}`);
  return `${lines.join('\n')}\n`;
}

export async function runSecaiAudit(args: readonly string[], output: Output): Promise<number> {
  const parsed = parseArgs(args);
  if (typeof parsed === 'string') {
    output.err(`secai-audit: ${parsed}\n${USAGE}\n`);
    return 2;
  }
  let externalHead: VerifiedHead | undefined;
  if (parsed.headFile !== undefined) {
    try {
      externalHead = await readHeadFile(parsed.headFile);
    } catch (error) {
      output.err(`secai-audit: cannot use --head ${parsed.headFile}: ${(error as Error).message}\n`);
      return 2;
    }
  }
  let result: LogVerification;
  try {
    result = await verifyLogDirectory(parsed.dir, externalHead ? { externalHead } : {});
  } catch (error) {
    output.err(`secai-audit: cannot read ${parsed.dir}: ${(error as Error).message}\n`);
    return 1;
  }
  output.out(parsed.json ? `${JSON.stringify(result, null, 2)}\n` : describe(result));
  return result.valid ? 0 : 1;
}

export default async function main(args: readonly string[]): Promise<number> {
  return runSecaiAudit(args, { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) });
}
