// Plan generations when plans go out before their generation is persisted: never below what the
// agent enforces, never the same number for other content, stable when nothing changed.
import { assignGeneration, MAX_PLAN_GENERATION, type PlanVersion } from './planner.js';

const v = (generation: number, digest: string): PlanVersion => ({ generation, digest });

const cases: [string, string, Parameters<typeof assignGeneration>[1], number][] = [
  ['a first plan', 'a', {}, 1],
  ['the published plan again', 'a', { published: v(4, 'a'), persisted: v(3, 'z') }, 4],
  ['a change while running', 'b', { published: v(4, 'a'), persisted: v(4, 'a') }, 5],
  ['after a restart, the persisted plan again (writes nothing)', 'a', { persisted: v(7, 'a') }, 7],
  ['after a restart, a change', 'b', { persisted: v(7, 'a') }, 8],
  ['the agent enforces what this process published', 'b', { published: v(5, 'b'), agent: v(5, 'b') }, 5],
  ['the agent is behind', 'b', { published: v(5, 'b'), agent: v(4, 'a') }, 5],
  // The predecessor published 8 (content b) and crashed before persisting it; the agent applied it.
  ['after a restart, the unpersisted plan the agent enforces', 'b', { persisted: v(7, 'a'), agent: v(8, 'b') }, 8],
  // ... and meanwhile the content went back to what status says: 7 would be refused as older.
  ['after a restart, a revert to the persisted content', 'a', { persisted: v(7, 'a'), agent: v(8, 'b') }, 9],
  ['after a restart, other content than either', 'c', { persisted: v(7, 'a'), agent: v(8, 'b') }, 9],
  ['the same number for other content is never reused', 'c', { persisted: v(7, 'a'), agent: v(9, 'b') }, 10],
  ['an absurd agent generation is ignored', 'b', { persisted: v(7, 'a'), agent: v(MAX_PLAN_GENERATION + 1, 'x') }, 8],
];

it.each(cases)('%s', (_what, digest, known, expected) => {
  expect(assignGeneration(digest, known)).toBe(expected);
});

it('never goes backwards for the agent, whatever was lost', () => {
  for (let persisted = 0; persisted < 6; persisted++) {
    for (let agent = 0; agent < 8; agent++) {
      for (const digest of ['a', 'b', 'c']) {
        const g = assignGeneration(digest, { persisted: v(persisted, 'a'), agent: v(agent, 'b') });
        expect(g).toBeGreaterThanOrEqual(agent);
        if (g === agent) expect(digest).toBe('b');
        expect(g).toBeGreaterThanOrEqual(persisted);
      }
    }
  }
});
