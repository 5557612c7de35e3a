// Every shell script passes shellcheck.
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../../hack/control-plane/control-plane.js';

const run = promisify(execFile);
const SKIP = new Set(['node_modules', '.git', '.lab', '.test-output', 'tools', 'bin']);

function shellScripts(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (SKIP.has(name)) return [];
    if (statSync(path).isDirectory()) return shellScripts(path);
    if (name.endsWith('.sh')) return [path];
    const head = readFileSync(path).subarray(0, 32).toString('utf8');
    return head.startsWith('#!/usr/bin/env bash') || head.startsWith('#!/bin/bash') ? [path] : [];
  });
}

const scripts = shellScripts(REPO_ROOT).map((p) => relative(REPO_ROOT, p));

it('finds the scripts', () => {
  expect(scripts).toEqual(expect.arrayContaining(['.ci/run', 'hack/install-tools.sh', 'hack/run-tests.sh']));
});

it.each(scripts)('%s passes shellcheck', async (script) => {
  const result = await run('shellcheck', ['-x', script], { cwd: REPO_ROOT }).catch((err: { stdout: string }) => ({
    stdout: err.stdout,
  }));
  expect(result.stdout).toBe('');
});
