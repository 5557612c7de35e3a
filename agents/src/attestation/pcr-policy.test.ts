import { createHash } from 'node:crypto';
import { extendPcr, parsePcrRead, pcrSelectionBytes, policyPcrDigest, publicAuthPolicy, sealedBlobAuthPolicy } from './pcr-policy.js';

const zeros = Buffer.alloc(32);
const pcrMap = (entries: [number, Buffer][]) => new Map(entries);

it('extends a PCR as H(old || digest) in the bank\'s hash', () => {
  const digest = createHash('sha256').update('event').digest();
  expect(extendPcr('sha256', zeros, digest).equals(createHash('sha256').update(zeros).update(digest).digest())).toBe(true);
  expect(extendPcr('sha1', Buffer.alloc(20), Buffer.alloc(20, 1)).toString('hex')).toBe(createHash('sha1').update(Buffer.alloc(20)).update(Buffer.alloc(20, 1)).digest('hex'));
  expect(() => extendPcr('sha256', zeros, Buffer.alloc(20))).toThrow('32 bytes');
  expect(() => extendPcr('md5', zeros, zeros)).toThrow('unknown PCR bank');
});

it('marshals a PCR selection as TPML_PCR_SELECTION with a 3-byte bitmap', () => {
  expect(pcrSelectionBytes('sha256', [7, 0, 4, 2]).toString('hex')).toBe('00000001000b0395' + '0000');
  expect(pcrSelectionBytes('sha1', [23, 16]).toString('hex')).toBe('000000010004030000' + '81');
  expect(() => pcrSelectionBytes('sha256', [24])).toThrow('0 to 23');
  expect(() => pcrSelectionBytes('sha256', [1, 1])).toThrow('twice');
});

it('gives the PolicyPCR digest tpm2_policypcr gave for sha256:0,16 on a fresh swtpm', () => {
  // Measured with tpm2-tools 5.4 on swtpm 0.7.1 (both PCRs all zeros): tpm2_policypcr -l sha256:0,16.
  expect(policyPcrDigest('sha256', [0, 16], pcrMap([[0, zeros], [16, zeros]])).toString('hex')).toBe(
    'eaba795a1470d109ab9532d03d4eeec2ebcd8dff15bb650343d1edd10cfb8d5c',
  );
  expect(() => policyPcrDigest('sha256', [0, 16], pcrMap([[0, zeros]]))).toThrow('no sha256 value for PCR 16');
});

it('reads the authPolicy of a sealed object and of a systemd-tpm2 blob', () => {
  const policy = Buffer.alloc(32, 0xab);
  const tpmtPublic = Buffer.concat([Buffer.from('0008000b00000012', 'hex'), Buffer.from([0, 32]), policy, Buffer.from('0010', 'hex')]);
  const tpm2bPublic = Buffer.concat([Buffer.from([0, tpmtPublic.length]), tpmtPublic]);
  expect(publicAuthPolicy(tpm2bPublic).equals(policy)).toBe(true);
  const tpm2bPrivate = Buffer.concat([Buffer.from([0, 4]), Buffer.from('dead', 'hex'), Buffer.from('beef', 'hex')]);
  expect(sealedBlobAuthPolicy(Buffer.concat([tpm2bPrivate, tpm2bPublic])).equals(policy)).toBe(true);
  expect(() => publicAuthPolicy(Buffer.from([0xff, 0xff, 0]))).toThrow('out of bounds');
  expect(() => publicAuthPolicy(Buffer.concat([Buffer.from([0, 10]), Buffer.from('0008000b000000120fff', 'hex')]))).toThrow('authPolicy');
});

it('parses tpm2_pcrread output for one bank and refuses wrong-sized values', () => {
  const text = ['  sha1:', '    7 : 0x' + '11'.repeat(20), '  sha256:', '    0 : 0x' + '00'.repeat(32), '    16: 0x' + 'AB'.repeat(32), ''].join('\n');
  const values = parsePcrRead(text, 'sha256');
  expect([...values.keys()]).toEqual([0, 16]);
  expect(values.get(16)!.toString('hex')).toBe('ab'.repeat(32));
  expect(parsePcrRead(text, 'sha1').get(7)!.length).toBe(20);
  expect(() => parsePcrRead('  sha256:\n    3 : 0x1234\n', 'sha256')).toThrow('bad value');
});
