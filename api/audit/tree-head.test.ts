import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import type { SignedTreeHead } from '../gen/proto/secai/fleet/v1/agent.js';
import { consistencyProofRanges, leafHash, rootOfLeafHashes } from './merkle.js';
import {
  HeadTransitionFailure,
  keyFingerprint,
  treeHeadSigningInput,
  verifiedHeadFromJson,
  verifiedHeadToJson,
  verifyHeadTransition,
  verifyTreeHeadSignature,
  type VerifiedHead,
} from './tree-head.js';

interface NodeKey {
  privateKey: KeyObject;
  raw: Buffer;
}

function nodeKey(): NodeKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  return { privateKey, raw };
}

const leaves = (n: number, tag = 'entry') => Array.from({ length: n }, (_, i) => leafHash(Buffer.from(`${tag} ${i}`)));

function signedHead(key: NodeKey, entries: Buffer[], timestampUnixMillis = 1_700_000_000_000): SignedTreeHead {
  const head = { treeSize: entries.length, rootHash: rootOfLeafHashes(entries), timestampUnixMillis };
  return { ...head, signature: sign(null, treeHeadSigningInput(head), key.privateKey) };
}

function proof(entries: Buffer[], fromSize: number, toHead: SignedTreeHead) {
  const hashes = consistencyProofRanges(fromSize, entries.length).map((r) => rootOfLeafHashes(entries.slice(r.begin, r.end)));
  return { fromSize, toHead, hashes };
}

function verifiedOf(key: NodeKey, entries: Buffer[]): VerifiedHead {
  return { treeSize: entries.length, rootHash: rootOfLeafHashes(entries), keyFingerprint: keyFingerprint(key.raw) };
}

describe('tree head signatures', () => {
  it('sign exactly the documented four lines', () => {
    const input = treeHeadSigningInput({ treeSize: 8, rootHash: Buffer.alloc(32, 0xab), timestampUnixMillis: 1700000000123 });
    expect(input.toString('ascii')).toBe(`secai.io/audit-tree-head/v1\n8\n${'ab'.repeat(32)}\n1700000000123\n`);
  });

  it('verify under the signing key only, and not after any field changes', () => {
    const key = nodeKey();
    const head = signedHead(key, leaves(5));
    expect(verifyTreeHeadSignature(head, key.raw)).toBe(true);
    expect(verifyTreeHeadSignature(head, nodeKey().raw)).toBe(false);
    expect(verifyTreeHeadSignature({ ...head, treeSize: 6 }, key.raw)).toBe(false);
    expect(verifyTreeHeadSignature({ ...head, timestampUnixMillis: head.timestampUnixMillis + 1 }, key.raw)).toBe(false);
    expect(verifyTreeHeadSignature({ ...head, rootHash: rootOfLeafHashes(leaves(4)) }, key.raw)).toBe(false);
    expect(verifyTreeHeadSignature({ ...head, signature: head.signature.subarray(0, 63) }, key.raw)).toBe(false);
    expect(verifyTreeHeadSignature(head, key.raw.subarray(0, 31))).toBe(false);
    expect(verifyTreeHeadSignature({ ...head, treeSize: -1 }, key.raw)).toBe(false);
  });
});

describe('verifyHeadTransition', () => {
  const key = nodeKey();
  const history = leaves(20);

  it('trusts the first head on first contact once its signature verifies', () => {
    const head = signedHead(key, history);
    expect(verifyHeadTransition(undefined, head, undefined, key.raw)).toEqual({
      ok: true,
      firstHead: true,
      verified: verifiedOf(key, history),
    });
  });

  it('accepts a grown tree with a valid consistency proof, and the same head again', () => {
    const last = verifiedOf(key, history.slice(0, 13));
    const head = signedHead(key, history);
    expect(verifyHeadTransition(last, head, proof(history, 13, head), key.raw)).toMatchObject({ ok: true, firstHead: false });
    expect(verifyHeadTransition(verifiedOf(key, history), signedHead(key, history, 1_800_000_000_000), undefined, key.raw).ok).toBe(true);
    expect(verifyHeadTransition(verifiedOf(key, []), head, undefined, key.raw).ok).toBe(true);
  });

  const rewritten = [...history];
  rewritten[3] = leafHash(Buffer.from('rewritten'));
  const otherKey = nodeKey();
  const head20 = signedHead(key, history);
  const cases: [string, () => ReturnType<typeof verifyHeadTransition>, HeadTransitionFailure][] = [
    ['a signature by another key', () => verifyHeadTransition(verifiedOf(key, history.slice(0, 13)), head20, proof(history, 13, head20), key.raw.map((b, i) => (i === 0 ? b ^ 1 : b))), HeadTransitionFailure.KeyChanged],
    ['a node that now presents another key', () => {
      const head = signedHead(otherKey, history);
      return verifyHeadTransition(verifiedOf(key, history.slice(0, 13)), head, proof(history, 13, head), otherKey.raw);
    }, HeadTransitionFailure.KeyChanged],
    ['a head whose signature does not verify', () => verifyHeadTransition(verifiedOf(key, history.slice(0, 13)), { ...head20, timestampUnixMillis: 5 }, proof(history, 13, head20), key.raw), HeadTransitionFailure.BadSignature],
    ['a shorter tree', () => verifyHeadTransition(verifiedOf(key, history), signedHead(key, history.slice(0, 19)), undefined, key.raw), HeadTransitionFailure.TreeShrank],
    ['an empty log after a verified head', () => verifyHeadTransition(verifiedOf(key, history), signedHead(key, []), undefined, key.raw), HeadTransitionFailure.TreeShrank],
    ['another root for the verified size', () => verifyHeadTransition(verifiedOf(key, history), signedHead(key, rewritten), undefined, key.raw), HeadTransitionFailure.Fork],
    ['growth without a proof', () => verifyHeadTransition(verifiedOf(key, history.slice(0, 13)), head20, undefined, key.raw), HeadTransitionFailure.ProofMissing],
    ['a proof from another size', () => verifyHeadTransition(verifiedOf(key, history.slice(0, 13)), head20, proof(history, 12, head20), key.raw), HeadTransitionFailure.ProofInvalid],
    ['a proof to another head', () => verifyHeadTransition(verifiedOf(key, history.slice(0, 13)), head20, proof(history, 13, signedHead(key, history.slice(0, 19))), key.raw), HeadTransitionFailure.ProofInvalid],
    ['a rewritten history that grew past the verified size', () => {
      const head = signedHead(key, rewritten);
      return verifyHeadTransition(verifiedOf(key, history.slice(0, 13)), head, proof(rewritten, 13, head), key.raw);
    }, HeadTransitionFailure.ProofInvalid],
    ['a root hash of the wrong length', () => verifyHeadTransition(undefined, { ...head20, rootHash: Buffer.alloc(31) }, undefined, key.raw), HeadTransitionFailure.MalformedHead],
    ['a public key of the wrong length', () => verifyHeadTransition(undefined, head20, undefined, Buffer.alloc(33)), HeadTransitionFailure.MalformedHead],
  ];

  it.each(cases)('rejects %s', (_name, run, failure) => {
    const result = run();
    expect(result).toMatchObject({ ok: false, failure });
    if (!result.ok) expect(result.message.length).toBeGreaterThan(10);
  });
});

describe('verified head files', () => {
  it('round-trip through JSON and name the wrong field', () => {
    const key = nodeKey();
    const head = verifiedOf(key, leaves(3));
    expect(verifiedHeadFromJson(JSON.parse(JSON.stringify(verifiedHeadToJson(head))))).toEqual(head);
    expect(() => verifiedHeadFromJson({ ...verifiedHeadToJson(head), treeSize: -1 })).toThrow('treeSize');
    expect(() => verifiedHeadFromJson({ ...verifiedHeadToJson(head), rootHash: 'AB' })).toThrow('rootHash');
    expect(() => verifiedHeadFromJson({ ...verifiedHeadToJson(head), keyFingerprint: undefined })).toThrow('keyFingerprint');
    expect(() => verifiedHeadFromJson([])).toThrow('object');
  });
});
