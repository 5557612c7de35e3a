// Rollout records survive a round trip through a ConfigMap, are bounded, and a corrupted one reads
// as absent rather than as a wrong rollout.
import { gzipSync } from 'node:zlib';
import type { ConfigMap } from './caches.js';
import { decodeRecord, effectiveSpec, recordConfigMap, recordConfigMapName, revisionOf, type RolloutRecord } from './rollout-records.js';

const record: RolloutRecord = {
  policy: 'mirror',
  policyUid: 'u1',
  revisions: { r1: { allow: [{ ip: '192.0.2.1' }] } },
  stable: 'r1',
  target: 'r1',
  targetGeneration: 3,
  released: { 'node-a': { revision: 'r1', at: 5 } },
  state: 'Complete',
  message: '',
  startedAt: 1,
};
const owner = { apiVersion: 'secai.io/v1alpha1' as const, kind: 'EgressPolicy' as const, metadata: { name: 'mirror', uid: 'u1' }, spec: {} };

it('round-trips through the ConfigMap it is stored in', () => {
  const cm = recordConfigMap(record, 'secai-system', owner) as unknown as ConfigMap;
  expect(cm.metadata).toMatchObject({ name: 'egress-rollout.mirror', namespace: 'secai-system', labels: { 'secai.io/egress-rollout': 'true' }, annotations: { 'secai.io/egress-policy': 'mirror' } });
  expect(decodeRecord(cm)).toEqual(record);
});

it('reads a corrupted or foreign record as none', () => {
  const cm = (data: string) => ({ metadata: {}, binaryData: { 'record.json.gz': data } }) as unknown as ConfigMap;
  expect(decodeRecord(cm('not base64 gzip'))).toBeUndefined();
  expect(decodeRecord(cm(gzipSync('{"hello":1}').toString('base64')))).toBeUndefined();
  expect(decodeRecord({ metadata: {} } as ConfigMap)).toBeUndefined();
});

it('refuses a record too large for a ConfigMap', () => {
  const huge = { ...record, revisions: { r1: { allow: Array.from({ length: 60_000 }, (_, i) => ({ host: `h${i}-${Math.random().toString(36).slice(2)}.example.org`, description: Math.random().toString(36).repeat(4) })) } } };
  expect(() => recordConfigMap(huge, 'secai-system', owner)).toThrow(/over 921600/);
});

it('names records readably, hashing names too long for a ConfigMap', () => {
  expect(recordConfigMapName('p')).toBe('egress-rollout.p');
  expect(recordConfigMapName('x'.repeat(250))).toMatch(/^egress-rollout\.[0-9a-f]{32}$/);
});

it('gives the same revision to specs that differ only in their rollout settings', () => {
  const a = revisionOf(effectiveSpec({ allow: [{ ip: '192.0.2.1' }], rollout: { canary: 1 } }));
  const b = revisionOf(effectiveSpec({ allow: [{ ip: '192.0.2.1' }], rollout: { canary: 5 } }));
  const c = revisionOf(effectiveSpec({ allow: [{ ip: '192.0.2.2' }] }));
  expect(a).toBe(b);
  expect(a).not.toBe(c);
});
