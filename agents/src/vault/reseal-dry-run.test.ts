import { createHash } from 'node:crypto';
import { extendPcr, policyPcrDigest } from '../attestation/pcr-policy.js';
import type { Tpm2Token } from './luks-metadata.js';
import { predictUnseal } from './reseal-dry-run.js';

const live = new Map<number, Buffer>([0, 2, 4, 7, 11].map((p) => [p, createHash('sha256').update(`pcr ${p}`).digest()]));
const sealedPolicy = policyPcrDigest('sha256', [0, 2, 4, 7], live).toString('hex');
const token: Tpm2Token = { id: '0', keyslots: ['1'], pcrBank: 'sha256', pcrs: [0, 2, 4, 7], policyHash: sealedPolicy, pin: false, signedPolicyPcrs: [] };
const digest = (s: string) => createHash('sha256').update(s).digest('hex');

it('predicts a change to a bound PCR as breaking, and any other change as harmless', () => {
  expect(predictUnseal(token, live, [{ pcr: 11, extend: [digest('x')] }])).toMatchObject({ now: 'unseals', afterChange: 'unseals', affectedPcrs: [] });
  const broken = predictUnseal(token, live, [{ pcr: 7, extend: [digest('new db key')] }]);
  expect(broken).toMatchObject({ now: 'unseals', afterChange: 'fails', affectedPcrs: [7], sealedPolicy });
  const predicted = new Map(live).set(7, extendPcr('sha256', live.get(7)!, Buffer.from(digest('new db key'), 'hex')));
  expect(broken.predictedPolicy).toBe(policyPcrDigest('sha256', [0, 2, 4, 7], predicted).toString('hex'));
  expect(predictUnseal(token, live, [{ pcr: 7, value: live.get(7)!.toString('hex') }]).afterChange).toBe('unseals');
});

it('says when the key already fails to unseal before the change', () => {
  const drifted = new Map(live).set(0, Buffer.alloc(32));
  expect(predictUnseal(token, drifted, [])).toMatchObject({ now: 'fails', afterChange: 'fails' });
});

it.each([
  ['a PIN', { ...token, pin: true }, 'PIN'],
  ['a signed PCR policy', { ...token, signedPolicyPcrs: [11] }, 'signed policy'],
  ['no recorded policy', { ...token, policyHash: undefined }, 'records no policy'],
  ['an unreadable blob', { ...token, blob: Buffer.from([0xff]) }, 'cannot be read'],
  ['no PCRs', { ...token, pcrs: [] }, 'binds no PCRs'],
])('does not guess with %s', (_name, t, reason) => {
  expect(predictUnseal(t as Tpm2Token, live, [])).toMatchObject({ now: 'unpredictable', afterChange: 'unpredictable', reason: expect.stringContaining(reason) });
});

it('refuses malformed planned changes', () => {
  expect(() => predictUnseal(token, live, [{ pcr: 7, extend: ['abcd'] }])).toThrow('not a sha256 digest');
  expect(() => predictUnseal(token, live, [{ pcr: 7 }])).toThrow('either value or extend');
  expect(() => predictUnseal(token, live, [{ pcr: 7, value: digest('a'), extend: [] }])).toThrow('either value or extend');
  expect(() => predictUnseal(token, live, [{ pcr: 7, value: digest('a').toUpperCase() }])).toThrow('not a sha256 digest');
  expect(() => predictUnseal(token, live, Array.from({ length: 25 }, () => ({ pcr: 11, value: digest('a') })))).toThrow('at most 24');
});
