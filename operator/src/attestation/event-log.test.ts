// The boot event log parser and replay: logs written the way UEFI firmware writes them replay to the
// PCR values computed independently, and to the values tpm2-tools' tpm2_eventlog computes for the
// same bytes; Secure Boot is read from the measured SecureBoot variable only when its digest is
// the hash of its data; every malformed or oversized structure is refused with EventLogError.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCommand } from '../../../agents/src/exec.js';
import { DEFAULT_BANKS, EV, expectedPcrs, simulatedFirmwareBoot, variableEvent, writeEventLog, type LoggedEvent } from '../../../test/attestation/event-log-writer.js';
import { EventLogError, loggedSecureBoot, type EventLogLimits, parseEventLog, replayEventLog } from './event-log.js';
import { TpmAlg } from './tpm-structures.js';

let dir: string;
beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'secai-eventlog-'))));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const boot = simulatedFirmwareBoot({ secureBoot: true });

/** The "pcrs:" section of tpm2_eventlog's YAML: bank → PCR → value. */
async function toolReplay(log: Buffer): Promise<Map<string, Map<number, string>>> {
  const file = join(dir, `log-${Math.random().toString(36).slice(2)}.bin`);
  writeFileSync(file, log);
  const { stdout, code } = await runCommand('tpm2_eventlog', [file], { timeoutMs: 10_000 });
  expect(code).toBe(0);
  const banks = new Map<string, Map<number, string>>();
  let bank: Map<number, string> | undefined;
  for (const line of stdout.slice(stdout.lastIndexOf('\npcrs:')).split('\n')) {
    const b = /^ {2}(sha\d+):$/.exec(line);
    if (b) banks.set(b[1]!, (bank = new Map()));
    const v = /^ {4}(\d+)\s*: 0x([0-9a-fA-F]+)$/.exec(line);
    if (v && bank) bank.set(Number(v[1]), v[2]!.toLowerCase());
  }
  return banks;
}

it.each([
  ['a UEFI boot with Secure Boot on, SHA-1 and SHA-256 banks', boot, {}],
  ['a boot with Secure Boot off, started in locality 3', simulatedFirmwareBoot({ secureBoot: false }), { startupLocality: 3 }],
  ['a SHA-256-only log', boot, { banks: [TpmAlg.SHA256] }],
])('replays %s to the PCRs computed independently and by tpm2_eventlog', async (_what, events, options: { startupLocality?: number; banks?: number[] }) => {
  const log = writeEventLog(events, options);
  const parsed = parseEventLog(log);
  expect(parsed.events).toHaveLength(events.length + (options.startupLocality !== undefined ? 1 : 0));
  expect(parsed.startupLocality).toBe(options.startupLocality ?? 0);
  const tool = await toolReplay(log);
  for (const [alg, name] of [[TpmAlg.SHA1, 'sha1'], [TpmAlg.SHA256, 'sha256']] as const) {
    if (!(options.banks ?? DEFAULT_BANKS).includes(alg)) {
      expect(() => replayEventLog(parsed, alg)).toThrow(EventLogError);
      continue;
    }
    const replayed = replayEventLog(parsed, alg);
    expect(new Map([...replayed].map(([k, v]) => [k, v.toString('hex')]))).toEqual(new Map([...expectedPcrs(events, alg, options.startupLocality)].map(([k, v]) => [k, v.toString('hex')])));
    // tpm2_eventlog seeds PCR 0 with the StartupLocality only from tpm2-tools 5.6 on (Debian 12 has 5.4).
    for (const [pcr, value] of replayed) if (pcr !== 0 || !options.startupLocality) expect(tool.get(name)?.get(pcr)).toBe(value.toString('hex'));
  }
});

it('reads Secure Boot from the measured SecureBoot variable, and refuses one whose data is not what was measured', () => {
  expect(loggedSecureBoot(parseEventLog(writeEventLog(boot)), TpmAlg.SHA256)).toBe('Enabled');
  expect(loggedSecureBoot(parseEventLog(writeEventLog(simulatedFirmwareBoot({ secureBoot: false }))), TpmAlg.SHA256)).toBe('Disabled');
  expect(loggedSecureBoot(parseEventLog(writeEventLog(boot.filter((e) => e.pcr !== 7))), TpmAlg.SHA256)).toBeUndefined();
  // The log says "on" while the firmware measured "off".
  const off = variableEvent('SecureBoot', Buffer.from([0]));
  const digests = new Map(DEFAULT_BANKS.map((alg) => [alg, createHash(alg === TpmAlg.SHA1 ? 'sha1' : 'sha256').update(off).digest()]));
  const lying = boot.map((e): LoggedEvent => (e.type === EV.EV_EFI_VARIABLE_DRIVER_CONFIG && e.data.includes(Buffer.from('SecureBoot', 'utf16le')) ? { ...e, digests } : e));
  expect(() => loggedSecureBoot(parseEventLog(writeEventLog(lying)), TpmAlg.SHA256)).toThrow(/not the hash of its data/);
});

/** Patches a valid log at a known place. */
const log = writeEventLog(boot);
const specSize = log.readUInt32LE(28);
const firstEvent = 32 + specSize;
const patched = (at: number, write: (b: Buffer) => void) => {
  const copy = Buffer.from(log);
  write(copy.subarray(at));
  return copy;
};

it.each<[string, Buffer, RegExp, Partial<EventLogLimits>]>([
  ['an empty file', Buffer.alloc(0), /needs 4 bytes/, {}],
  ['a SHA-1 log without the Spec ID event', Buffer.concat([Buffer.alloc(8), Buffer.alloc(20), Buffer.from([4, 0, 0, 0]), Buffer.alloc(4)]), /not an EV_NO_ACTION Spec ID event/, {}],
  ['another first event signature', patched(32, (b) => b.write('Spec ID Event02', 'ascii')), /not a "Spec ID Event03"/, {}],
  ['a Spec ID event larger than any', patched(28, (b) => b.writeUInt32LE(5000)), /not an EV_NO_ACTION Spec ID event/, {}],
  ['zero algorithms', patched(32 + 24, (b) => b.writeUInt32LE(0)), /declares 0 algorithms/, {}],
  ['a SHA-256 digest size of 20', patched(32 + 28 + 6, (b) => b.writeUInt16LE(20)), /digest size 20/, {}],
  ['a PCR index of 24', patched(firstEvent, (b) => b.writeUInt32LE(24)), /names PCR 24/, {}],
  ['a digest count of 0x7fffffff', patched(firstEvent + 8, (b) => b.writeUInt32LE(0x7fffffff)), /has 2147483647 digests/, {}],
  ['a digest of an undeclared algorithm', patched(firstEvent + 12, (b) => b.writeUInt16LE(0x0012)), /undeclared algorithm/, {}],
  ['an event size beyond the file', patched(firstEvent + 12 + 22 + 34, (b) => b.writeUInt32LE(0x00ffffff)), /has 16777215 bytes of data|needs 16777215 bytes/, {}],
  ['an event size beyond the limit', patched(firstEvent + 12 + 22 + 34, (b) => b.writeUInt32LE(0xffffffff)), /at most/, {}],
  ['a truncated last event', log.subarray(0, log.length - 3), /needs/, {}],
  ['more events than allowed', log, /more than 10 events/, { maxEvents: 10 }],
  ['more bytes than allowed', log, /exceeds 1000/, { maxBytes: 1000 }],
])('refuses %s', (_what, bytes, message, limits) => {
  expect(() => parseEventLog(bytes, limits)).toThrow(EventLogError);
  expect(() => parseEventLog(bytes, limits)).toThrow(message);
});

it('parses and replays a realistic firmware log in well under a millisecond per kilobyte (figure printed)', () => {
  const times: number[] = [];
  for (let i = 0; i < 200; i++) {
    const t0 = performance.now();
    replayEventLog(parseEventLog(log), TpmAlg.SHA256);
    times.push(performance.now() - t0);
  }
  const median = times.sort((a, b) => a - b)[100]!;
  console.log(`event log of ${boot.length} events, ${log.length} bytes: parse + SHA-256 replay median ${median.toFixed(3)} ms`);
  expect(median).toBeLessThan(20);
});
