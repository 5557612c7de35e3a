// ESLint is clean, and its import-layering rule (STYLE.md) catches what it is meant to catch.
import { join } from 'node:path';
import { ESLint } from 'eslint';
import { REPO_ROOT } from '../../hack/control-plane/control-plane.js';
import { layeringViolation } from '../../hack/eslint/import-layering.js';

const at = (path: string) => join(REPO_ROOT, path);

it('eslint reports no problems in the project', async () => {
  const eslint = new ESLint({ cwd: REPO_ROOT });
  const results = await eslint.lintFiles(['.']);
  const problems = results.flatMap((r) => r.messages.map((m) => `${r.filePath}:${m.line} ${m.ruleId}: ${m.message}`));
  expect(problems).toEqual([]);
}, 180_000);

describe('import layering', () => {
  it.each([
    ['operator/src/runtime/queue.ts', 'operator/src/controllers/model/reconcile.ts', 'runtime/ must not import controllers/'],
    ['operator/src/runtime/queue.ts', 'operator/src/cmd/main.ts', 'runtime/ must not import cmd/'],
    ['operator/src/controllers/model/reconcile.ts', 'operator/src/cmd/main.ts', 'controllers/ must not import cmd/'],
    ['operator/src/controllers/model/reconcile.ts', 'operator/src/controllers/egresspolicy/status.ts', 'controllers never import each other'],
    ['operator/src/runtime/queue.ts', 'agents/src/egress/render.ts', 'must not import the agent'],
    ['agents/src/egress/render.ts', 'operator/src/runtime/queue.ts', 'must not import the operator'],
    ['api/crd/model.ts', 'operator/src/runtime/kube-client.ts', 'api/ holds shared contracts'],
    ['agents/src/egress/render.ts', 'test/support/netns.ts', 'must not import test/'],
    ['operator/src/runtime/queue.ts', 'hack/control-plane/control-plane.ts', 'must not import hack/'],
  ])('%s importing %s is refused', (from, to, why) => {
    expect(layeringViolation(at(from), at(to))).toContain(why);
  });

  it.each([
    ['operator/src/controllers/model/reconcile.ts', 'operator/src/runtime/queue.ts'],
    ['operator/src/controllers/model/reconcile.ts', 'operator/src/controllers/model/status.ts'],
    ['operator/src/cmd/main.ts', 'operator/src/controllers/model/controller.ts'],
    ['operator/src/runtime/queue.ts', 'api/crd/model.ts'],
    ['agents/src/egress/render.ts', 'api/gen/crd-types.ts'],
    ['test/integration/x.test.ts', 'operator/src/runtime/queue.ts'],
    ['operator/src/runtime/queue.test.ts', 'test/support/environment.ts'],
  ])('%s importing %s is allowed', (from, to) => {
    expect(layeringViolation(at(from), at(to))).toBeUndefined();
  });

  it('is reported by eslint on a file that breaks it', async () => {
    const eslint = new ESLint({ cwd: REPO_ROOT });
    const [result] = await eslint.lintText("import { x } from '../controllers/model/reconcile.js';\nexport const y = x;\n", {
      filePath: at('operator/src/runtime/example.ts'),
    });
    expect(result?.messages.map((m) => m.ruleId)).toContain('secai/import-layering');
  });
});
