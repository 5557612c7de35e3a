// The whole project type-checks in strict mode (SWC only strips types when jest runs tests).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../../hack/control-plane/control-plane.js';

const run = promisify(execFile);

it('tsc --noEmit reports no errors', async () => {
  const result = await run('node_modules/.bin/tsc', ['--noEmit', '-p', 'tsconfig.json'], { cwd: REPO_ROOT }).catch(
    (err: { stdout: string }) => ({ stdout: err.stdout }),
  );
  expect(result.stdout).toBe('');
}, 180_000);
