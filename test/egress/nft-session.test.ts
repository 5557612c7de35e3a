// The agent's libnftables session (agents/src/egress/nft-session.ts) against the real kernel, in a
// test-created namespace: it answers what `nft` answers (the same output; the same refusals with
// the same messages, less nft's /dev/stdin location prefix), one
// transaction per request, requests in order, and a session that hangs, dies or breaks the
// protocol is replaced without losing the next request.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandError, runCommand } from '../../agents/src/exec.js';
import { buildNftSession, NftSession, sessionRequest } from '../../agents/src/egress/nft-session.js';
import { runNft, type NftTarget } from '../../agents/src/egress/nft-target.js';
import { nativeHelperCacheDir } from '../../agents/src/egress/set-element-reader.js';
import { NetnsHarness } from '../support/netns.js';

let harness: NetnsHarness;
let netns: string;
let binary: string;
let session: NftSession;
let work: string;

beforeAll(async () => {
  harness = await NetnsHarness.create({ prefix: 'sfses' });
  netns = await harness.addNamespace('session');
  binary = await buildNftSession({ exec: runCommand, cacheDir: nativeHelperCacheDir() });
  session = new NftSession({ binary, netns });
  work = mkdtempSync(join(tmpdir(), 'nft-session-'));
});

afterAll(async () => {
  session?.close();
  await harness?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

const nft = (...args: string[]) => harness.runChecked(netns, 'nft', args);
const nftFailure = async (input: string) => {
  const result = await harness.run(netns, 'nft', ['-f', '-'], { input });
  expect(result.code).not.toBe(0);
  return result.stderr;
};

const TABLE = `table inet probe {
  set allowed { type ipv4_addr . inet_service; elements = { 192.0.2.1 . 443, 192.0.2.2 . 8443 } }
  chain output { type filter hook output priority 0; policy accept; ip daddr . tcp dport @allowed accept; }
}
`;

describe('nft command lines as session requests', () => {
  test.each([
    [['-f', '-'], 'x', { text: 'x', flags: {} }],
    [['-j', '-t', 'list', 'ruleset', 'inet'], undefined, { text: 'list ruleset inet', flags: { json: true, terse: true } }],
    [['-j', 'reset counter inet secai a; reset counter inet secai b'], undefined, { text: 'reset counter inet secai a; reset counter inet secai b', flags: { json: true } }],
  ])('%j is run by the session', (args, input, request) => {
    expect(sessionRequest(args, input)).toEqual(request);
  });

  test.each([
    [['-f', '/etc/nftables.conf'], undefined],
    [['-c', '-f', '-'], 'x'],
    [['-n', 'list', 'ruleset'], undefined],
    [['-f', '-'], undefined],
    [['list', 'ruleset'], 'unexpected input'],
    [[], undefined],
  ])('%j goes to nft itself', (args, input) => {
    expect(sessionRequest(args, input)).toBeUndefined();
  });
});

describe('a session in the kernel', () => {
  test('applies one transaction and lists what nft lists', async () => {
    await session.run(`${TABLE}`);
    expect(await session.run('list table inet probe', { json: true })).toBe(await nft('-j', 'list', 'table', 'inet', 'probe'));
    expect(await session.run('list ruleset inet', { json: true, terse: true })).toBe(await nft('-j', '-t', 'list', 'ruleset', 'inet'));
    await session.run('delete table inet probe');
    expect(await nft('list', 'tables')).not.toContain('probe');
  });

  test("refuses what nft refuses, with nft's messages, and applies nothing of the transaction", async () => {
    const broken = `${TABLE}add element inet probe allowed { 192.0.2.3 . 80 }\nadd element inet probe absent { 192.0.2.4 . 80 }\n`;
    const error = await session.run(broken).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(CommandError);
    // The messages, less nft's location prefix; the context line under each may differ, as
    // libnftables 1.0.6 quotes a buffer's first line where nft quotes the failing line of a file.
    const messages = (text: string) => text.split('\n').map((line) => line.replace(/^\/dev\/stdin:[\d:-]+: /, '')).filter((line) => line.startsWith('Error:'));
    const expected = messages(await nftFailure(broken));
    expect(expected.length).toBeGreaterThan(0);
    expect(messages((error as CommandError).result.stderr)).toEqual(expected);
    expect((error as CommandError).message).toMatch(/No such file or directory/);
    expect(await nft('list', 'tables')).not.toContain('probe');
  });

  test('runs requests in the order they were made', async () => {
    const results = await Promise.all([
      session.run(TABLE),
      session.run('add element inet probe allowed { 192.0.2.9 . 9 }'),
      session.run('list set inet probe allowed', { json: true }),
      session.run('delete table inet probe'),
    ]);
    expect(results[2]).toContain('192.0.2.9');
    expect(await nft('list', 'tables')).not.toContain('probe');
  });

  test('through runNft, a target with a session answers as nft does', async () => {
    const target: NftTarget = { exec: runCommand, nftPath: 'nft', netns, session };
    await runNft(target, ['-f', '-'], TABLE);
    expect(await runNft(target, ['-j', '-t', 'list', 'ruleset', 'inet'])).toBe(await nft('-j', '-t', 'list', 'ruleset', 'inet'));
    await expect(runNft(target, ['list', 'table', 'inet', 'absent'])).rejects.toThrow(/No such file or directory/);
    await runNft(target, ['delete', 'table', 'inet', 'probe']);
  });
});

describe('a session that fails', () => {
  // A stand-in for the helper: a shell script speaking the protocol badly.
  function fakeSession(name: string, script: string): NftSession {
    const path = join(work, name);
    writeFileSync(path, `#!/bin/sh\n${script}\n`);
    chmodSync(path, 0o755);
    return new NftSession({ binary: path });
  }

  test('one that hangs is killed at the timeout, and the next request gets a new session', async () => {
    const counter = join(work, 'starts');
    writeFileSync(counter, '');
    // The first start hangs; later starts are the real helper.
    const hanging = fakeSession('hang-once', `if [ ! -s ${counter} ]; then echo started > ${counter}; exec sleep 60; fi\nexec ${binary}`);
    await expect(hanging.run('list tables', {}, 500)).rejects.toThrow(/timed out after 500 ms/);
    await expect(hanging.run('list tables')).resolves.toBe('');
    hanging.close();
  });

  test('one that exits fails the waiting request with its reason', async () => {
    const dying = fakeSession('die', 'read line; echo "broken helper" >&2; exit 7');
    await expect(dying.run('list tables')).rejects.toThrow(/exited 7: broken helper/);
    dying.close();
  });

  test('one that answers out of protocol is stopped', async () => {
    const garbled = fakeSession('garbled', 'read line; echo "hello there"; sleep 60');
    await expect(garbled.run('list tables')).rejects.toThrow(/malformed header/);
    garbled.close();
  });

  test('one that answers more than it was asked is stopped', async () => {
    const chatty = fakeSession('chatty', 'read line; head -c 1 >/dev/null; printf "done 0 2 0\\nokdone 0 0 0\\n"; sleep 60');
    await expect(chatty.run('x')).rejects.toThrow(/answered more than it was asked/);
    chatty.close();
  });

  test('a closed session refuses requests', async () => {
    const closed = new NftSession({ binary });
    closed.close();
    await expect(closed.run('list tables')).rejects.toThrow(/closed/);
  });

  test('the helper itself refuses a malformed request and a request with a NUL byte', async () => {
    for (const input of ['run - x\n', 'run q 1\nx', 'run - 3\na\0b']) {
      const result = await runCommand(binary, [], { input, timeoutMs: 10_000 });
      expect(result.code).toBe(2);
      expect(result.stdout).toBe('');
    }
  });
});
