import { PassThrough } from 'node:stream';
import { CommandError, runChecked, runCommand } from './exec.js';

it('returns the exit status and output of a command', async () => {
  const result = await runCommand('sh', ['-c', 'cat; echo err >&2; exit 3'], { input: 'hello' });
  expect(result).toMatchObject({ code: 3, stdout: 'hello', stderr: 'err\n', timedOut: false });
});

it('kills the whole process group on timeout', async () => {
  const started = Date.now();
  const result = await runCommand('sh', ['-c', 'sleep 30 & sleep 30'], { timeoutMs: 200 });
  expect(result.timedOut).toBe(true);
  expect(result.signal).toBe('SIGKILL');
  expect(Date.now() - started).toBeLessThan(5000);
});

it('keeps at most maxOutputBytes of output', async () => {
  const result = await runCommand('sh', ['-c', 'head -c 100000 /dev/zero'], { maxOutputBytes: 1000 });
  expect(result.stdout).toHaveLength(1000);
});

it('runChecked throws a CommandError naming the command on failure', async () => {
  await expect(runChecked(runCommand, 'sh', ['-c', 'echo nope >&2; exit 1'])).rejects.toThrow(CommandError);
  await expect(runChecked(runCommand, 'sh', ['-c', 'echo nope >&2; exit 1'])).rejects.toThrow('sh exited 1: nope');
});

it('kills the command when its signal aborts, also one aborted before it started', async () => {
  const controller = new AbortController();
  const running = runCommand('sleep', ['30'], { signal: controller.signal });
  setTimeout(() => controller.abort(), 50);
  expect((await running).signal).toBe('SIGKILL');
  expect((await runCommand('sleep', ['30'], { signal: AbortSignal.abort() })).signal).toBe('SIGKILL');
});

it('pipes a stream into stdin as it comes', async () => {
  const input = new PassThrough();
  const result = runCommand('cat', [], { input });
  input.write('one\n');
  setTimeout(() => input.end('two\n'), 50);
  expect((await result).stdout).toBe('one\ntwo\n');
});
