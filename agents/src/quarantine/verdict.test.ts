import { composeVerdict, failed, notRequested, passed, Reason, Stage, STAGE_ORDER } from './verdict.js';

it('is trusted when every stage passed or was not requested', () => {
  const results = STAGE_ORDER.map((s) => (s === Stage.SmokeTest ? notRequested(s, 'off') : passed(s)));
  const v = composeVerdict(results, { sha256: 'a'.repeat(64), sizeBytes: 1 });
  expect(v).toMatchObject({ trusted: true, sha256: 'a'.repeat(64) });
  expect(v.stage).toBeUndefined();
  expect(v.stages.map((s) => s.stage)).toEqual(STAGE_ORDER);
});

it('names the first failing stage, in stage order, and marks later stages not reached', () => {
  const v = composeVerdict([
    failed(Stage.StaticScan, Reason.HighEntropy, 'hot'),
    passed(Stage.Fetch),
    passed(Stage.Sandbox),
    failed(Stage.Format, Reason.BadMagic, 'magic'),
    passed(Stage.Integrity),
    passed(Stage.Signature),
  ]);
  expect(v).toMatchObject({ trusted: false, stage: Stage.Format, reason: Reason.BadMagic });
  expect(v.stages.find((s) => s.stage === Stage.StaticScan)).toMatchObject({ status: 'skipped', reason: Reason.NotReached });
});

it('is not trusted while a stage has no result', () => {
  const v = composeVerdict([passed(Stage.Fetch)]);
  expect(v).toMatchObject({ trusted: false, stage: Stage.Sandbox, reason: Reason.NotReached });
});
