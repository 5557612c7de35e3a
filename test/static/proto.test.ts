// The agent channel contract: agent.proto is buf-lint clean and its generated TypeScript is current
// (regenerate with `make generate`).
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../../hack/control-plane/control-plane.js';

const run = promisify(execFile);
const PROTO = join(REPO_ROOT, 'api', 'proto');
const GENERATED = join(REPO_ROOT, 'api', 'gen', 'proto');
const env = { ...process.env, PATH: `${join(REPO_ROOT, 'node_modules', '.bin')}:${process.env.PATH ?? ''}` };

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

it('buf lint reports nothing', async () => {
  const { stdout } = await run('buf', ['lint'], { cwd: PROTO, env });
  expect(stdout).toBe('');
});

it('the generated TypeScript matches agent.proto', async () => {
  const out = mkdtempSync(join(tmpdir(), 'secai-proto-'));
  try {
    await run('buf', ['generate', '-o', out], { cwd: PROTO, env });
    const fresh = files(out).map((p) => relative(out, p)).sort();
    expect(files(GENERATED).map((p) => relative(GENERATED, p)).sort()).toEqual(fresh);
    for (const file of fresh) {
      expect(readFileSync(join(GENERATED, file), 'utf8')).toBe(readFileSync(join(out, file), 'utf8'));
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}, 60_000);
