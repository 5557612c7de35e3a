import { FqdnAnswers } from './fqdn-answers.js';

const bounds = { minSeconds: 30, maxSeconds: 3600 };

test('answers live for their bounded TTL and are due for refresh well before they expire', () => {
  const answers = new FqdnAnswers(bounds);
  answers.record('Mirror.Example.', [
    { address: '192.0.2.1', ttlSeconds: 5 },
    { address: '192.0.2.2', ttlSeconds: 100 },
  ], 0);
  expect(answers.resolved(0).get('mirror.example')).toEqual([
    { address: '192.0.2.1', ttlSeconds: 30 },
    { address: '192.0.2.2', ttlSeconds: 100 },
  ]);
  // Refresh at 60% of the shortest lifetime (30 s).
  expect(answers.due(['mirror.example'], 17_999)).toEqual([]);
  expect(answers.due(['mirror.example'], 18_000)).toEqual(['mirror.example']);
  expect(answers.nextRefreshAtMs(['mirror.example'])).toBe(18_000);
  // Expired answers are forgotten exactly when the kernel drops them.
  expect(answers.resolved(30_000).get('mirror.example')).toEqual([{ address: '192.0.2.2', ttlSeconds: 70 }]);
  expect(answers.resolved(100_000).get('mirror.example')).toEqual([]);
});

test('a failed resolution keeps live answers until they expire and retries soon', () => {
  const answers = new FqdnAnswers(bounds);
  answers.record('a.example', [{ address: '192.0.2.1', ttlSeconds: 60 }], 0);
  answers.record('a.example', [], 40_000);
  expect(answers.resolved(40_000).get('a.example')).toEqual([{ address: '192.0.2.1', ttlSeconds: 20 }]);
  expect(answers.nextRefreshAtMs(['a.example'])).toBe(43_000);
  expect(answers.resolved(60_000).get('a.example')).toEqual([]);
});

test('names never asked are due; names leaving the plan are forgotten', () => {
  const answers = new FqdnAnswers(bounds);
  expect(answers.due(['new.example', 'NEW.example.'], 0)).toEqual(['new.example']);
  answers.record('old.example', [{ address: '192.0.2.1', ttlSeconds: 60 }], 0);
  answers.retain(['new.example']);
  expect(answers.resolved(0).has('old.example')).toBe(false);
});
