// Every way of rewriting a node's history that issue 7 names, detected twice: by the operator's check
// of each new signed head (verifyHeadTransition with a consistency proof from the node's log), and by
// the offline auditor (secai-audit verify). The node side is the real AuditLog on real files; the
// strongest attacker is root on the node, who can rebuild the whole log with the node's own key.
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  HeadTransitionFailure,
  keyFingerprint,
  verifyHeadTransition,
  type VerifiedHead,
} from '../../api/audit/tree-head.js';
import { AuditLog } from '../../agents/src/audit/audit-log.js';
import type { AuditEvent } from '../../agents/src/audit/audit-sink.js';
import { runSecaiAudit } from '../../agents/src/audit/secai-audit-cli.js';
import { LogFailure, verifyLogDirectory } from '../../agents/src/audit/verify-log-directory.js';
import { HEADS_FILE, SEGMENTS_DIR } from '../../agents/src/audit/log-files.js';
import { REPO_ROOT } from '../../hack/control-plane/control-plane.js';

const run = promisify(execFile);
const clock = () => 1_700_000_000_000;
const events: AuditEvent[] = Array.from({ length: 40 }, (_, i) => ({
  type: i % 2 ? 'model.promoted' : 'plan.applied',
  subject: `item-${i}`,
  data: { generation: i, digest: `${i}`.padStart(64, '0') },
}));

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'secai-tamper-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A node's log as an agent writes it: `events` appended, a head signed (and stored) after each of `headsAt`. */
async function writeLog(dir: string, history: AuditEvent[], headsAt: number[], keyFrom?: string): Promise<AuditLog> {
  if (keyFrom) {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    await copyFile(join(keyFrom, 'node-key.pem'), join(dir, 'node-key.pem'));
  }
  const log = await AuditLog.open({ dir, clock });
  for (const [i, e] of history.entries()) {
    await log.record(e);
    if (headsAt.includes(i + 1)) await log.signTreeHead();
  }
  return log;
}

/** The operator's view after verifying the honest node at `size`. */
async function operatorVerifiedAt(log: AuditLog, size: number): Promise<VerifiedHead> {
  return { treeSize: size, rootHash: await log.rootAt(size), keyFingerprint: keyFingerprint(log.publicKey) };
}

/** What the operator concludes when the (restarted, possibly rewritten) node answers ProveConsistency. */
async function operatorCheck(lastVerified: VerifiedHead, node: AuditLog) {
  const proof = await node.proveConsistency(Math.min(lastVerified.treeSize, node.size));
  return verifyHeadTransition(lastVerified, proof.toHead!, proof, node.publicKey);
}

describe('the operator detects a rewritten history from the node\'s next head', () => {
  let honestDir: string;
  let verified: VerifiedHead;
  beforeEach(async () => {
    honestDir = join(root, 'honest');
    const honest = await writeLog(honestDir, events.slice(0, 20), []);
    verified = await operatorVerifiedAt(honest, 20);
    for (const e of events.slice(20)) await honest.record(e);
    expect(await operatorCheck(verified, honest)).toMatchObject({ ok: true });
    await honest.close();
  });

  /** The attacker's log: `history` rebuilt with the node's key, or with a fresh key. */
  async function rebuilt(history: AuditEvent[], key: 'node-key' | 'new-key' = 'node-key'): Promise<AuditLog> {
    return writeLog(join(root, 'rewritten'), history, [], key === 'node-key' ? honestDir : undefined);
  }

  const modified = events.map((e, i) => (i === 5 ? { ...e, data: { ...e.data, digest: 'f'.repeat(64) } } : e));
  const cases: [string, () => Promise<AuditLog>, HeadTransitionFailure][] = [
    ['a modified entry', () => rebuilt(modified), HeadTransitionFailure.ProofInvalid],
    ['a deleted entry', () => rebuilt(events.filter((_, i) => i !== 5)), HeadTransitionFailure.ProofInvalid],
    ['reordered entries', () => rebuilt([...events.slice(0, 3), events[4]!, events[3]!, ...events.slice(5)]), HeadTransitionFailure.ProofInvalid],
    ['a truncated log', () => rebuilt(events.slice(0, 15)), HeadTransitionFailure.TreeShrank],
    ['a log deleted entirely (the agent restarts empty with its key)', () => rebuilt([]), HeadTransitionFailure.TreeShrank],
    ['a deleted log regrown past the verified size', () => rebuilt(events.slice(20).concat(events.slice(20))), HeadTransitionFailure.ProofInvalid],
    ['a log deleted with its key (the agent starts afresh)', () => rebuilt([], 'new-key'), HeadTransitionFailure.KeyChanged],
    ['a forked history (another root for the verified size)', () => rebuilt(modified.slice(0, 20)), HeadTransitionFailure.Fork],
    ['a swapped key over the same history', () => rebuilt(events, 'new-key'), HeadTransitionFailure.KeyChanged],
  ];

  it.each(cases)('%s', async (_name, rewrite, failure) => {
    const node = await rewrite();
    try {
      const result = await operatorCheck(verified, node);
      expect(result).toMatchObject({ ok: false, failure });
    } finally {
      await node.close();
    }
  });
});

describe('secai-audit detects tampering with the files offline', () => {
  let dir: string;
  let segment: string;
  let lines: string[];
  beforeEach(async () => {
    dir = join(root, 'node');
    await (await writeLog(dir, events, [20, 40])).close();
    segment = join(dir, SEGMENTS_DIR, '0000000000000000.jsonl');
    lines = (await readFile(segment, 'utf8')).split('\n').filter(Boolean);
  });

  const codes = async (externalHead?: VerifiedHead) =>
    (await verifyLogDirectory(dir, externalHead ? { externalHead } : {})).failures.map((f) => f.code);

  it('accepts the untouched log and returns the head to keep', async () => {
    const result = await verifyLogDirectory(dir);
    expect(result).toMatchObject({ valid: true, treeSize: 40, headsChecked: 2, failures: [] });
    expect(result.verifiedHead?.treeSize).toBe(40);
  });

  it('a modified entry no longer gives the signed root', async () => {
    await writeFile(segment, `${lines.map((l, i) => (i === 5 ? l.replace('item-5', 'item-X') : l)).join('\n')}\n`);
    expect(await codes()).toEqual([LogFailure.HeadRootMismatch, LogFailure.HeadRootMismatch]);
  });

  it('a deleted entry breaks the sequence and the signed roots', async () => {
    await writeFile(segment, `${lines.filter((_, i) => i !== 5).join('\n')}\n`);
    const found = await codes();
    expect(found).toContain(LogFailure.EntryOutOfOrder);
    expect(found).toContain(LogFailure.HeadRootMismatch);
    expect(found).toContain(LogFailure.HeadBeyondLog);
  });

  it('reordered entries break the sequence and the signed roots', async () => {
    const swapped = [...lines];
    [swapped[3], swapped[4]] = [swapped[4]!, swapped[3]!];
    await writeFile(segment, `${swapped.join('\n')}\n`);
    const found = await codes();
    expect(found).toContain(LogFailure.EntryOutOfOrder);
    expect(found).toContain(LogFailure.HeadRootMismatch);
  });

  it('stored heads put out of order are reported, and the log itself still checked', async () => {
    const heads = (await readFile(join(dir, HEADS_FILE), 'utf8')).split('\n').filter(Boolean);
    await writeFile(join(dir, HEADS_FILE), `${[heads[1], heads[0]].join('\n')}\n`);
    const result = await verifyLogDirectory(dir);
    expect(result.failures.map((f) => f.code)).toEqual([LogFailure.HeadOutOfOrder]);
    expect(result.headsChecked).toBe(1);
  });

  it('a truncated log is caught by its own heads, and by a kept head when the heads were cut too', async () => {
    const kept = (await verifyLogDirectory(dir)).verifiedHead!;
    await writeFile(segment, `${lines.slice(0, 30).join('\n')}\n`);
    expect(await codes()).toEqual([LogFailure.HeadBeyondLog]);
    const heads = (await readFile(join(dir, HEADS_FILE), 'utf8')).split('\n');
    await writeFile(join(dir, HEADS_FILE), `${heads[0]}\n`);
    expect(await codes()).toEqual([]);
    expect(await codes({ ...kept, rootHash: Buffer.from(kept.rootHash, 'hex') })).toEqual([LogFailure.TreeShrank]);
  });

  it('a log deleted entirely is invalid, and with a kept head it is also shorter than that head', async () => {
    const kept = (await verifyLogDirectory(dir)).verifiedHead!;
    await rm(dir, { recursive: true });
    expect(await codes()).toEqual([LogFailure.KeyMissing]);
    expect(await codes({ ...kept, rootHash: Buffer.from(kept.rootHash, 'hex') })).toEqual([LogFailure.KeyMissing, LogFailure.TreeShrank]);
  });

  it('a forked history re-signed with the node key passes alone but not against a kept head', async () => {
    const kept = (await verifyLogDirectory(dir)).verifiedHead!;
    const forkDir = join(root, 'fork');
    const forked = events.map((e, i) => (i === 5 ? { ...e, subject: 'forked' } : e));
    await (await writeLog(forkDir, forked, [20, 40], dir)).close();
    await rm(dir, { recursive: true });
    dir = forkDir;
    expect(await codes()).toEqual([]);
    expect(await codes({ ...kept, rootHash: Buffer.from(kept.rootHash, 'hex') })).toEqual([LogFailure.Fork]);
  });

  it('a swapped key is caught by the stored heads, and a fully re-signed log by a kept head', async () => {
    const kept = (await verifyLogDirectory(dir)).verifiedHead!;
    await writeFile(join(dir, 'node-key.pub'), `${'cd'.repeat(32)}\n`);
    expect(await codes()).toEqual([LogFailure.HeadSignature, LogFailure.HeadSignature]);
    const resignedDir = join(root, 'resigned');
    await (await writeLog(resignedDir, events, [20, 40])).close();
    dir = resignedDir;
    expect(await codes()).toEqual([]);
    expect(await codes({ ...kept, rootHash: Buffer.from(kept.rootHash, 'hex') })).toEqual([LogFailure.KeyChanged]);
  });

  it('is a command with exit status 0 valid, 1 invalid, 2 usage, and a JSON report', async () => {
    const bin = join(REPO_ROOT, 'bin', 'secai-audit.mjs');
    const ok = await run(process.execPath, [bin, 'verify', dir, '--json']);
    const report = JSON.parse(ok.stdout) as { valid: boolean; verifiedHead: unknown };
    expect(report.valid).toBe(true);
    const headFile = join(root, 'kept-head.json');
    await writeFile(headFile, JSON.stringify(report.verifiedHead));
    await expect(run(process.execPath, [bin, 'verify', dir, '--head', headFile])).resolves.toMatchObject({ stdout: expect.stringContaining('VALID') });

    await writeFile(segment, `${lines.slice(0, 39).join('\n')}\n`);
    await writeFile(join(dir, HEADS_FILE), '');
    const invalid = await run(process.execPath, [bin, 'verify', dir, '--head', headFile]).catch((e: { code: number; stdout: string }) => e);
    expect(invalid).toMatchObject({ code: 1, stdout: expect.stringContaining('TreeShrank') });

    const usage = await run(process.execPath, [bin, 'verify']).catch((e: { code: number; stderr: string }) => e);
    expect(usage).toMatchObject({ code: 2, stderr: expect.stringContaining('usage: secai-audit verify') });
  }, 30_000);

  it('answers usage errors and unreadable head files with status 2', async () => {
    const out: string[] = [];
    const io = { out: (t: string) => out.push(t), err: (t: string) => out.push(t) };
    expect(await runSecaiAudit([], io)).toBe(2);
    expect(await runSecaiAudit(['check', dir], io)).toBe(2);
    expect(await runSecaiAudit(['verify', dir, '--bogus'], io)).toBe(2);
    expect(await runSecaiAudit(['verify', dir, '--head'], io)).toBe(2);
    await writeFile(join(root, 'bad-head.json'), JSON.stringify({ treeSize: 3, rootHash: 'zz', keyFingerprint: 'a'.repeat(64) }));
    expect(await runSecaiAudit(['verify', dir, '--head', join(root, 'bad-head.json')], io)).toBe(2);
    expect(out.join('')).toContain('rootHash must be 64 lowercase hex digits');
    expect(await runSecaiAudit(['verify', dir], io)).toBe(0);
  });
});
