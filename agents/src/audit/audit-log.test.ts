import { chmod, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import {
  consistencyProofRanges,
  inclusionProofRanges,
  leafHash,
  rootOfLeafHashes,
  verifyConsistencyProof,
  verifyInclusionProof,
} from '../../../api/audit/merkle.js';
import { keyFingerprint, verifyTreeHeadSignature } from '../../../api/audit/tree-head.js';
import { AuditLog, AuditLogCorruptError } from './audit-log.js';
import type { AuditEvent } from './audit-sink.js';
import { HEADS_FILE, SEGMENTS_DIR, TREE_DIR, levelFileName } from './log-files.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'secai-audit-log-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const event = (i: number): AuditEvent => ({ type: 'vault.checked', subject: `check-${i}`, data: { compliant: i % 3 !== 0, reasons: i, note: 'x'.repeat(200) } });

/** The log's lines, read straight from the segment files in order. */
async function storedLines(logDir: string): Promise<Buffer[]> {
  const names = (await readdir(join(logDir, SEGMENTS_DIR))).sort();
  const lines: Buffer[] = [];
  for (const name of names) {
    const text = await readFile(join(logDir, SEGMENTS_DIR, name), 'utf8');
    for (const line of text.split('\n').filter((l) => l.length > 0)) lines.push(Buffer.from(line));
  }
  return lines;
}

async function filled(n: number, options: Partial<Parameters<typeof AuditLog.open>[0]> = {}): Promise<AuditLog> {
  const log = await AuditLog.open({ dir, clock: () => 1_700_000_000_000, ...options });
  for (let i = 0; i < n; i++) await log.record(event(i));
  return log;
}

describe('appending', () => {
  it('writes each event as one canonical JSON line carrying its index, and the root covers exactly those lines', async () => {
    const log = await filled(5);
    const lines = await storedLines(dir);
    expect(lines).toHaveLength(5);
    expect(lines[1]!.toString()).toBe(
      `{"data":{"compliant":true,"note":"${'x'.repeat(200)}","reasons":1},"index":1,"subject":"check-1","time":"2023-11-14T22:13:20.000Z","type":"vault.checked"}`,
    );
    expect((await log.rootAt(5)).equals(rootOfLeafHashes(lines.map(leafHash)))).toBe(true);
    await log.close();
  });

  it('keeps concurrent records in one gapless order', async () => {
    const log = await AuditLog.open({ dir });
    await Promise.all(Array.from({ length: 50 }, (_, i) => log.record(event(i))));
    const indexes = (await storedLines(dir)).map((l) => (JSON.parse(l.toString()) as { index: number }).index);
    expect(indexes).toEqual(Array.from({ length: 50 }, (_, i) => i));
    await log.close();
  });

  it('refuses events that are not bounded audit records', async () => {
    const log = await AuditLog.open({ dir });
    await expect(log.record({ type: 'no.such' as 'vault.checked', data: {} })).rejects.toThrow('unknown audit event type');
    await expect(log.record({ type: 'vault.checked', subject: 's'.repeat(513), data: {} })).rejects.toThrow('subject');
    await expect(log.record({ type: 'vault.checked', data: { big: 'x'.repeat(2049) } })).rejects.toThrow('data.big');
    await expect(log.record({ type: 'vault.checked', data: { n: Number.NaN } })).rejects.toThrow('data.n');
    expect(log.size).toBe(0);
    await log.close();
  });

  it('counts entries and tree size in the registry it is given', async () => {
    const registry = new Registry();
    const log = await filled(3, { registry });
    await log.signTreeHead();
    const text = await registry.metrics();
    expect(text).toContain('secai_agent_audit_entries_total{type="vault.checked"} 3');
    expect(text).toContain('secai_agent_audit_tree_size 3');
    expect(text).toContain('secai_agent_audit_signed_heads_total 1');
    await log.close();
  });
});

describe('the node key', () => {
  it('is created once with mode 0600, exported raw for the Hello and kept across restarts', async () => {
    const log = await AuditLog.open({ dir });
    const key = log.publicKey;
    expect(key).toHaveLength(32);
    expect((await stat(join(dir, 'node-key.pem'))).mode & 0o777).toBe(0o600);
    expect((await readFile(join(dir, 'node-key.pub'), 'utf8')).trim()).toBe(key.toString('hex'));
    await log.close();
    const again = await AuditLog.open({ dir });
    expect(again.publicKey.equals(key)).toBe(true);
    expect(again.keyFingerprint).toBe(keyFingerprint(key));
    await again.close();
  });

  it('is refused when others may read it or when the public key file was swapped', async () => {
    await (await AuditLog.open({ dir })).close();
    await chmod(join(dir, 'node-key.pem'), 0o640);
    await expect(AuditLog.open({ dir })).rejects.toThrow('0600');
    await chmod(join(dir, 'node-key.pem'), 0o600);
    await writeFile(join(dir, 'node-key.pub'), `${'ab'.repeat(32)}\n`);
    await expect(AuditLog.open({ dir })).rejects.toThrow('does not match');
  });
});

describe('rotation', () => {
  it('moves entries into read-only segments without changing the tree, and continues after a restart', async () => {
    const log = await filled(700, { maxSegmentBytes: 64 * 1024 });
    const rootBefore = await log.rootAt(700);
    await log.close();
    const names = (await readdir(join(dir, SEGMENTS_DIR))).sort();
    expect(names.length).toBeGreaterThan(2);
    expect(names[0]).toBe('0000000000000000.jsonl');
    for (const name of names.slice(0, -1)) expect((await stat(join(dir, SEGMENTS_DIR, name))).mode & 0o777).toBe(0o440);

    const reopened = await AuditLog.open({ dir, maxSegmentBytes: 64 * 1024 });
    expect(reopened.size).toBe(700);
    await reopened.record(event(700));
    const lines = await storedLines(dir);
    expect(lines).toHaveLength(701);
    expect((await reopened.rootAt(700)).equals(rootBefore)).toBe(true);
    expect((await reopened.rootAt(701)).equals(rootOfLeafHashes(lines.map(leafHash)))).toBe(true);
    await reopened.close();
  });
});

describe('segment files checked against what the log wrote', () => {
  it('finds nothing while the log alone writes, and names each change made behind its back', async () => {
    const log = await filled(700, { maxSegmentBytes: 64 * 1024 });
    expect(await log.checkSegments()).toEqual([]);
    const names = (await readdir(join(dir, SEGMENTS_DIR))).sort();
    const [sealed, second] = names;
    const open = names.at(-1)!;
    await chmod(join(dir, SEGMENTS_DIR, sealed!), 0o640);
    await appendFile(join(dir, SEGMENTS_DIR, sealed!), 'x');
    await rm(join(dir, SEGMENTS_DIR, second!));
    await appendFile(join(dir, SEGMENTS_DIR, open), '{"forged":true}\n');
    await writeFile(join(dir, SEGMENTS_DIR, '0000000000005000.jsonl'), '');
    const changes = await log.checkSegments();
    expect(changes).toHaveLength(4);
    expect(changes).toEqual(
      expect.arrayContaining([
        `sealed segment ${sealed} changed`,
        `sealed segment ${second} is gone`,
        'segment 0000000000005000.jsonl was not written by the log',
        expect.stringMatching(/^the open segment holds \d+ bytes, the log wrote \d+$/),
      ]),
    );
    await log.close();
  });
});

describe('signed heads and proofs', () => {
  it('signs heads under the node key, stores one per new size, and says when the tree grew past the stored head', async () => {
    let now = 1_700_000_000_000;
    const log = await filled(4, { clock: () => now });
    const first = await log.signTreeHead();
    now += 1000;
    const again = await log.signTreeHead();
    expect(verifyTreeHeadSignature(first, log.publicKey)).toBe(true);
    expect(again.timestampUnixMillis).toBe(first.timestampUnixMillis + 1000);
    expect((await readFile(join(dir, HEADS_FILE), 'utf8')).trim().split('\n')).toHaveLength(1);

    expect(log.grewSinceStoredHead).toBe(false);
    await log.record(event(4));
    expect(log.grewSinceStoredHead).toBe(true);
    await log.signTreeHead();
    expect(log.grewSinceStoredHead).toBe(false);
    expect(log.latestStoredHead?.treeSize).toBe(5);
    expect((await readFile(join(dir, HEADS_FILE), 'utf8')).trim().split('\n')).toHaveLength(2);
    await log.close();
  });

  it('gives inclusion and consistency proofs equal to the RFC 6962 definitions, which verify', async () => {
    const log = await filled(37);
    const leaves = (await storedLines(dir)).map(leafHash);
    const slowHash = (r: { begin: number; end: number }) => rootOfLeafHashes(leaves.slice(r.begin, r.end));
    for (const size of [1, 2, 13, 16, 37]) {
      const root = rootOfLeafHashes(leaves.slice(0, size));
      for (const index of [0, Math.floor(size / 2), size - 1]) {
        const proof = await log.inclusionProof(index, size);
        expect(proof).toEqual(inclusionProofRanges(index, size).map(slowHash));
        expect(verifyInclusionProof(leaves[index]!, index, size, proof, root)).toBe(true);
      }
    }
    for (const from of [0, 1, 8, 21, 37]) {
      const proof = await log.proveConsistency(from);
      expect(proof.toHead?.treeSize).toBe(37);
      expect(proof.hashes).toEqual(consistencyProofRanges(from, 37).map(slowHash));
      expect(verifyConsistencyProof(from, 37, rootOfLeafHashes(leaves.slice(0, from)), proof.toHead!.rootHash, proof.hashes)).toBe(true);
    }
    await expect(log.proveConsistency(38)).rejects.toThrow(RangeError);
    await log.close();
  });
});

describe('opening a log that changed on disk', () => {
  it('rebuilds a deleted or torn tree cache from the entries', async () => {
    const log = await filled(21);
    const root = await log.rootAt(21);
    await log.signTreeHead();
    await log.close();
    await rm(join(dir, TREE_DIR, levelFileName(2)));
    await truncate(join(dir, TREE_DIR, levelFileName(0)), 21 * 32 - 5);
    const reopened = await AuditLog.open({ dir });
    expect(reopened.size).toBe(21);
    expect((await reopened.rootAt(21)).equals(root)).toBe(true);
    await reopened.close();
    await rm(join(dir, TREE_DIR), { recursive: true });
    const rebuilt = await AuditLog.open({ dir });
    expect((await rebuilt.rootAt(21)).equals(root)).toBe(true);
    await rebuilt.close();
  });

  it('drops a last entry torn by a crash and appends after it', async () => {
    await (await filled(3)).close();
    await appendFile(join(dir, SEGMENTS_DIR, '0000000000000000.jsonl'), '{"data":{},"ind');
    const log = await AuditLog.open({ dir });
    expect(log.size).toBe(3);
    await log.record(event(3));
    expect(await storedLines(dir)).toHaveLength(4);
    await log.close();
  });

  it('refuses to append to a log whose entries were modified, removed or whose stored head they no longer match', async () => {
    await (await filled(6)).close();
    const segment = join(dir, SEGMENTS_DIR, '0000000000000000.jsonl');
    const original = await readFile(segment, 'utf8');
    await writeFile(segment, original.replace('"compliant":true', '"compliant":false'));
    await expect(AuditLog.open({ dir })).rejects.toThrow(AuditLogCorruptError);

    const lines = original.split('\n');
    await writeFile(segment, `${lines.slice(0, 5).join('\n')}\n`);
    await expect(AuditLog.open({ dir })).rejects.toThrow('the tree holds 6 entries, the segments only 5');

    // Entries and tree cache replaced together (a rewritten history): the stored head gives it away.
    await writeFile(segment, original);
    const log = await AuditLog.open({ dir });
    await log.signTreeHead();
    await log.close();
    await rm(join(dir, TREE_DIR), { recursive: true });
    await writeFile(segment, original.replace('"compliant":true', '"compliant":null'));
    await expect(AuditLog.open({ dir })).rejects.toThrow('do not give the root of the stored head');
  });
});
