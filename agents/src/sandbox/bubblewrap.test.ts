import { LANDLOCK_LAUNCHER_INSIDE, renderBubblewrapArgs, renderLandlockArgs, type SandboxSpec } from './bubblewrap.js';

const spec: SandboxSpec = {
  argv: ['/usr/bin/node', 'worker.js'],
  readOnlyBinds: [
    { source: '/usr', target: '/usr' },
    { source: '/store/abc.gguf', target: '/model/model.gguf' },
  ],
  devices: ['/dev/nvidia0'],
  symlinks: [{ target: 'usr/bin', path: '/bin' }],
  scratch: { path: '/tmp', sizeBytes: 1024 },
  env: { HOME: '/tmp' },
  cwd: '/tmp',
  landlock: { read: ['/model/model.gguf'], readExec: ['/usr'], write: ['/tmp'], devices: ['/dev/nvidia0'] },
};

describe('renderBubblewrapArgs', () => {
  it('unshares everything, drops capabilities, clears the environment and dies with the agent', () => {
    const args = renderBubblewrapArgs(spec, {});
    for (const flag of ['--unshare-all', '--unshare-user', '--disable-userns', '--die-with-parent', '--new-session', '--clearenv']) {
      expect(args).toContain(flag);
    }
    expect(args.join(' ')).toContain('--cap-drop ALL');
    expect(args).not.toContain('--share-net');
  });

  it('binds read-only, bounds the scratch tmpfs and binds devices only when listed', () => {
    const text = renderBubblewrapArgs(spec, {}).join(' ');
    expect(text).toContain('--ro-bind /store/abc.gguf /model/model.gguf');
    expect(text).toContain('--size 1024 --tmpfs /tmp');
    expect(text).toContain('--dev-bind-try /dev/nvidia0 /dev/nvidia0');
    expect(text).not.toMatch(/--bind /);
    expect(text).toContain('--setenv HOME /tmp');
  });

  it('runs the program directly without extra layers', () => {
    const args = renderBubblewrapArgs(spec, {});
    expect(args.slice(args.indexOf('--') + 1)).toEqual(['/usr/bin/node', 'worker.js']);
    expect(args).not.toContain('--seccomp');
  });

  it('installs the filter and puts the Landlock launcher in front of the program', () => {
    const args = renderBubblewrapArgs(spec, { seccompFd: 4, landlockLauncher: '/cache/landlock-exec' });
    expect(args.join(' ')).toContain('--seccomp 4');
    expect(args.join(' ')).toContain(`--ro-bind /cache/landlock-exec ${LANDLOCK_LAUNCHER_INSIDE}`);
    const program = args.slice(args.indexOf('--') + 1);
    expect(program).toEqual([
      LANDLOCK_LAUNCHER_INSIDE,
      '--read', '/model/model.gguf',
      '--read-exec', '/usr',
      '--write', '/tmp',
      '--device', '/dev/nvidia0',
      '--',
      '/usr/bin/node', 'worker.js',
    ]);
  });
});

describe('renderLandlockArgs', () => {
  it('renders nothing for no grants', () => {
    expect(renderLandlockArgs({ read: [], readExec: [], write: [], devices: [] })).toEqual([]);
  });
});
