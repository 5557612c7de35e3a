// The network-namespace harness (test/support/netns.ts) that the egress tests and the lab build on.
import { spawn } from 'node:child_process';
import { runCommand, runChecked } from '../../agents/src/exec.js';
import { NetnsHarness, sweepNamespaces } from '../support/netns.js';

const namespaces = async () => (await runChecked(runCommand, 'ip', ['netns', 'list'])).split('\n').map((line) => line.split(' ')[0]!).filter(Boolean);

test('namespaces joined by a veth pair reach each other, have no default route, and vanish on destroy', async () => {
  const harness = await NetnsHarness.create({ prefix: 'sfegh' });
  let names: string[] = [];
  try {
    const a = await harness.addNamespace('a');
    const b = await harness.addNamespace('b');
    names = [a, b];
    expect(a).toBe(`sfegh-${process.pid}-a`);
    await harness.connect({ namespace: a, device: 'to-b', addresses: ['10.201.0.1/30', 'fd00:201::1/64'] }, { namespace: b, device: 'to-a', addresses: ['10.201.0.2/30', 'fd00:201::2/64'] });
    const server = harness.spawn(b, process.execPath, [new URL('upstream-servers.ts', import.meta.url).pathname, '--tcp', '[::]:7100']);
    await server.waitForOutput(/^ready$/m);
    const dial = (host: string) => harness.run(a, 'timeout', ['2', 'bash', '-c', `exec 3<>/dev/tcp/${host}/7100 && head -n1 <&3`]);
    await expect(dial('10.201.0.2')).resolves.toMatchObject({ code: 0, stdout: 'ok 7100\n' });
    await expect(dial('fd00:201::2')).resolves.toMatchObject({ code: 0, stdout: 'ok 7100\n' });
    await harness.assertNoDefaultRoute(a);
    // Nothing beyond the pair: an address outside it has no route.
    await expect(dial('10.202.0.1')).resolves.toMatchObject({ code: 1, stderr: expect.stringMatching(/Network is unreachable/) });
    // The veth ends never appear in the root namespace.
    expect(await runChecked(runCommand, 'ip', ['link', 'show'])).not.toMatch(/to-[ab]@/);

    const sleeper = harness.spawn(b, 'sleep', ['600']);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await runChecked(runCommand, 'ip', ['netns', 'pids', b])).split(/\s+/)).toContain(String(sleeper.pid));
    await harness.destroy();
    expect((await sleeper.exited).signal).toBe('SIGKILL');
    expect(await namespaces()).not.toEqual(expect.arrayContaining([a]));
    expect(await namespaces()).not.toEqual(expect.arrayContaining([b]));
  } finally {
    await harness.destroy();
  }
  expect(names).toHaveLength(2);
});

test('the sweeper removes leftovers of a dead owner, with their processes, and spares live owners', async () => {
  // A process that has exited: its id is the owner tag of a "crashed run".
  const gone = spawn('true');
  const deadPid = await new Promise<number>((resolve) => gone.on('exit', () => resolve(gone.pid!)));
  const leftover = `sfegh-${deadPid}-crashed`;
  await runChecked(runCommand, 'ip', ['netns', 'add', leftover]);
  const orphan = spawn('ip', ['netns', 'exec', leftover, 'sleep', '600'], { stdio: 'ignore' });
  const orphanExit = new Promise((resolve) => orphan.on('exit', (_code, signal) => resolve(signal)));
  await new Promise((resolve) => setTimeout(resolve, 200));

  const live = await NetnsHarness.create({ prefix: 'sfegh' });
  try {
    const mine = await live.addNamespace('alive');
    // create() swept already; sweeping again finds nothing of ours to remove.
    expect(await namespaces()).not.toContain(leftover);
    await expect(orphanExit).resolves.toBe('SIGKILL');
    expect(await sweepNamespaces('sfegh')).toEqual([]);
    expect(await namespaces()).toContain(mine);
  } finally {
    await live.destroy();
  }
});

test('refuses names that could collide or escape the prefix', async () => {
  await expect(NetnsHarness.create({ prefix: 'Bad-Prefix' })).rejects.toThrow(/prefix must match/);
  const harness = await NetnsHarness.create({ prefix: 'sfegh' });
  try {
    await expect(harness.addNamespace('../etc')).rejects.toThrow(/name must match/);
    await expect(harness.connect({ namespace: 'elsewhere', device: 'x', addresses: [] }, { namespace: 'other', device: 'y', addresses: [] })).rejects.toThrow(
      /not a namespace of this harness/,
    );
  } finally {
    await harness.destroy();
  }
});
