import { LuksMetadataError, luksVersion, parseLuks2Metadata } from './luks-metadata.js';

const minimal = {
  keyslots: { '0': { type: 'luks2', key_size: 64, kdf: { type: 'argon2id', time: 4, memory: 1048576, cpus: 4 } } },
  segments: { '0': { type: 'crypt', encryption: 'aes-xts-plain64' } },
  tokens: {
    '0': { type: 'systemd-tpm2', keyslots: ['0'], 'tpm2-pcrs': [7], 'tpm2_pubkey_pcrs': [11], 'tpm2-pin': true },
    '1': { type: 'systemd-fido2', keyslots: ['0'] },
  },
};

it('reads the LUKS version from the binary header prefix', () => {
  expect(luksVersion(Buffer.from('4c554b53babe0002', 'hex'))).toBe(2);
  expect(luksVersion(Buffer.from('4c554b53babe0001ffff', 'hex'))).toBe(1);
  expect(luksVersion(Buffer.from('4c554b53babe00', 'hex'))).toBeUndefined();
  expect(luksVersion(Buffer.from('SKUL\xba\xbe\x00\x02', 'latin1'))).toBeUndefined();
});

it('parses keyslots, segments and tokens, defaulting the bank of old systemd tokens to sha256', () => {
  expect(parseLuks2Metadata(JSON.stringify(minimal))).toEqual({
    keyslots: [{ id: '0', type: 'luks2', keySizeBits: 512, pbkdf: 'argon2id', pbkdfMemoryKib: 1048576 }],
    segments: [{ id: '0', type: 'crypt', cipher: 'aes-xts-plain64' }],
    tpm2Tokens: [{ id: '0', keyslots: ['0'], pcrBank: 'sha256', pcrs: [7], pin: true, signedPolicyPcrs: [11] }],
    otherTokens: ['systemd-fido2'],
  });
});

const broken: [string, unknown, string][] = [
  ['not JSON', '{', 'metadata is not JSON'],
  ['keyslots not an object', { ...minimal, keyslots: [] }, 'keyslots is not an object'],
  ['33 keyslots', { ...minimal, keyslots: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [String(i), minimal.keyslots['0']])) }, 'at most 32'],
  ['a keyslot named like a path', { ...minimal, keyslots: { '../x': minimal.keyslots['0'] } }, 'entry named'],
  ['a key size out of range', { ...minimal, keyslots: { '0': { ...minimal.keyslots['0'], key_size: 1e9 } } }, 'keyslots.0.key_size'],
  ['a PCR above 23', { ...minimal, tokens: { '0': { ...minimal.tokens['0'], 'tpm2-pcrs': [24] } } }, 'tokens.0.tpm2-pcrs[0]'],
  ['a policy hash that is not hex', { ...minimal, tokens: { '0': { ...minimal.tokens['0'], 'tpm2-policy-hash': 'XYZ' } } }, 'tpm2-policy-hash'],
  ['an oversized blob', { ...minimal, tokens: { '0': { ...minimal.tokens['0'], 'tpm2-blob': 'A'.repeat(65 * 1024) } } }, 'tpm2-blob'],
  ['an oversized string', { ...minimal, segments: { '0': { type: 'crypt', encryption: 'x'.repeat(300) } } }, 'segments.0.encryption'],
];

it.each(broken)('refuses metadata with %s, naming the field', (_name, value, message) => {
  const json = typeof value === 'string' ? value : JSON.stringify(value);
  expect(() => parseLuks2Metadata(json)).toThrow(LuksMetadataError);
  expect(() => parseLuks2Metadata(json)).toThrow(message);
});

it('refuses metadata larger than the LUKS2 JSON area', () => {
  expect(() => parseLuks2Metadata(' '.repeat(4 * 1024 * 1024 + 1))).toThrow('exceeds');
});
