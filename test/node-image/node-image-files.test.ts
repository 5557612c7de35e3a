// What the node image's files promise, read from the files themselves: SecAI OS's sysctl values,
// the boot order that keeps the node closed before it has network, the agent's sandbox (and the
// kernel behaviour that rules out ProtectKernelTunables for it), the kernel arguments, the
// Containerfile's sources, and shellcheck on every script of the image and the k3s tooling.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { runCommand } from '../../agents/src/exec.js';
import { REPO_ROOT } from '../../hack/control-plane/control-plane.js';

const run = promisify(execFile);
const IMAGE = join(REPO_ROOT, 'node-image');
const ROOTFS = join(IMAGE, 'rootfs');
const UNITS = join(ROOTFS, 'usr/lib/systemd/system');

/** A unit file as section -> key -> every value assigned, in order. */
type UnitFile = Map<string, Map<string, string[]>>;

function parseUnit(path: string): UnitFile {
  const unit: UnitFile = new Map();
  let section: Map<string, string[]> | undefined;
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const text = line.trim();
    if (text === '' || text.startsWith('#')) continue;
    const header = text.match(/^\[(.+)\]$/);
    if (header) {
      section = unit.get(header[1]!) ?? new Map();
      unit.set(header[1]!, section);
      continue;
    }
    const [key, ...rest] = text.split('=');
    if (!section || key === undefined) throw new Error(`${path}: line outside a section: ${text}`);
    section.set(key, [...(section.get(key) ?? []), rest.join('=')]);
  }
  return unit;
}

/** The space-separated words of every assignment of KEY. */
function words(unit: UnitFile, section: string, key: string): string[] {
  return (unit.get(section)?.get(key) ?? []).flatMap((value) => value.split(/\s+/).filter(Boolean));
}

function value(unit: UnitFile, section: string, key: string): string | undefined {
  return unit.get(section)?.get(key)?.at(-1);
}

describe('sysctl hardening (90-secai.conf)', () => {
  const settings = new Map<string, { value: string; optional: boolean }>();
  for (const line of readFileSync(join(ROOTFS, 'usr/lib/sysctl.d/90-secai.conf'), 'utf8').split('\n')) {
    const match = line.match(/^(-?)([a-z0-9_.]+)\s*=\s*(.+)$/);
    if (match) settings.set(match[2]!, { value: match[3]!.trim(), optional: match[1] === '-' });
  }

  // reference/secai-node.md §6 (90-secure-ai.conf), then what the kubelet demands under
  // protect-kernel-defaults.
  it.each([
    ['kernel.kptr_restrict', '2'],
    ['kernel.dmesg_restrict', '1'],
    ['kernel.perf_event_paranoid', '3'],
    ['kernel.unprivileged_bpf_disabled', '1'],
    ['kernel.unprivileged_userns_clone', '0'],
    ['kernel.yama.ptrace_scope', '1'],
    ['net.ipv4.ip_forward', '0'],
    ['net.ipv4.conf.all.accept_redirects', '0'],
    ['net.ipv4.conf.all.send_redirects', '0'],
    ['net.ipv6.conf.all.accept_redirects', '0'],
    ['kernel.core_pattern', '|/bin/false'],
    ['vm.overcommit_memory', '1'],
    ['vm.panic_on_oom', '0'],
    ['kernel.panic', '10'],
    ['kernel.panic_on_oops', '1'],
    ['kernel.keys.root_maxkeys', '1000000'],
    ['kernel.keys.root_maxbytes', '25000000'],
  ])('sets %s = %s', (key, expected) => {
    expect(settings.get(key)?.value).toBe(expected);
  });

  it('marks as optional only the keys that some kernels lack', () => {
    const optional = [...settings].filter(([, setting]) => setting.optional).map(([key]) => key);
    expect(optional.sort()).toEqual(['kernel.kexec_load_disabled', 'kernel.unprivileged_userns_clone', 'kernel.yama.ptrace_scope']);
  });
});

describe('boot order: no network, k3s or agent without the base firewall', () => {
  const firewall = parseUnit(join(UNITS, 'secai-base-firewall.service'));

  it('loads the base table before network-pre.target, pulled in early at sysinit', () => {
    expect(value(firewall, 'Unit', 'DefaultDependencies')).toBe('no');
    expect(words(firewall, 'Unit', 'Before')).toContain('network-pre.target');
    expect(words(firewall, 'Unit', 'Wants')).toContain('network-pre.target');
    expect(words(firewall, 'Install', 'WantedBy')).toEqual(['sysinit.target']);
    expect(value(firewall, 'Service', 'ExecStart')).toBe('/usr/libexec/secai/secai-base-firewall');
    expect(value(firewall, 'Service', 'ExecStart')).not.toContain('--check');
  });

  it('holds only CAP_NET_ADMIN', () => {
    expect(words(firewall, 'Service', 'CapabilityBoundingSet')).toEqual(['CAP_NET_ADMIN']);
  });

  it.each(['NetworkManager.service.d', 'systemd-networkd.service.d'])('%s requires it, so a failed load leaves the interfaces down', (dir) => {
    const dropIn = parseUnit(join(UNITS, dir, '50-secai-base-firewall.conf'));
    expect(words(dropIn, 'Unit', 'Requires')).toContain('secai-base-firewall.service');
    expect(words(dropIn, 'Unit', 'After')).toContain('secai-base-firewall.service');
  });

  it.each(['k3s-agent.service', 'secai-agent.service'])('%s requires it and starts after it and first boot', (name) => {
    const unit = parseUnit(join(UNITS, name));
    expect(words(unit, 'Unit', 'Requires')).toContain('secai-base-firewall.service');
    expect(words(unit, 'Unit', 'After')).toEqual(expect.arrayContaining(['secai-base-firewall.service', 'secai-firstboot.service']));
  });

  it('starts the SecAI agent after the k3s agent, and first boot before both', () => {
    expect(words(parseUnit(join(UNITS, 'secai-agent.service')), 'Unit', 'After')).toContain('k3s-agent.service');
    expect(words(parseUnit(join(UNITS, 'secai-firstboot.service')), 'Unit', 'Before')).toEqual(['k3s-agent.service', 'secai-agent.service']);
  });
});

describe('the agent’s sandbox (secai-agent.service)', () => {
  const agent = parseUnit(join(UNITS, 'secai-agent.service'));

  it.each([
    ['ProtectSystem', 'strict'],
    ['ProtectHome', 'yes'],
    ['PrivateTmp', 'yes'],
    ['NoNewPrivileges', 'yes'],
    ['ProtectKernelModules', 'yes'],
    ['ProtectControlGroups', 'yes'],
    ['RestrictSUIDSGID', 'yes'],
    ['DevicePolicy', 'closed'],
    ['LimitCORE', '0'],
    ['UMask', '0077'],
  ])('%s=%s', (key, expected) => {
    expect(value(agent, 'Service', key)).toBe(expected);
  });

  it('keeps only CAP_NET_ADMIN; the Debian drop-in adds back exactly CAP_SYS_ADMIN', () => {
    expect(words(agent, 'Service', 'CapabilityBoundingSet')).toEqual(['CAP_NET_ADMIN']);
    const dropIn = parseUnit(join(IMAGE, 'debian/50-userns-clone.conf'));
    expect(words(dropIn, 'Service', 'CapabilityBoundingSet')).toEqual(['CAP_SYS_ADMIN']);
  });

  it('allows the namespaces bubblewrap unshares, and nothing overmounts /proc', () => {
    expect(words(agent, 'Service', 'RestrictNamespaces').sort()).toEqual(['cgroup', 'ipc', 'mnt', 'net', 'pid', 'user', 'uts']);
    expect(agent.get('Service')?.has('ProtectKernelTunables')).toBe(false);
    expect(agent.get('Service')?.has('ProtectKernelLogs')).toBe(false);
    expect(words(agent, 'Service', 'ReadOnlyPaths')).toEqual(['/sys']);
  });

  it('cannot read the k3s join token or node credentials', () => {
    expect(words(agent, 'Service', 'InaccessiblePaths')).toEqual(expect.arrayContaining(['-/etc/rancher', '-/var/lib/rancher']));
  });
});

// Why the agent unit has no ProtectKernelTunables=: with a read-only bind over /proc/sys (which is
// what that directive mounts), the kernel refuses bubblewrap's own /proc inside its user namespace.
describe('bubblewrap under an overmounted /proc', () => {
  const bwrap = (setup: string) =>
    runCommand('unshare', [
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      `${setup} exec bwrap --unshare-all --unshare-user --die-with-parent --ro-bind / / --proc /proc --dev /dev true`,
    ]);

  it('mounts its /proc when /proc is left alone', async () => {
    const result = await bwrap('');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it('cannot mount its /proc once /proc/sys is bound read-only over itself', async () => {
    const result = await bwrap('mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys &&');
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("Can't mount proc");
  });
});

describe('unit files point at what the image installs', () => {
  const units = readdirSync(UNITS).filter((name) => name.endsWith('.service'));

  it.each(units)('%s runs programs that exist in rootfs/ (k3s comes from the bundle)', (name) => {
    const unit = parseUnit(join(UNITS, name));
    const programs = ['ExecStart', 'ExecStartPre'].flatMap((key) => unit.get('Service')?.get(key) ?? []).map((line) => line.replace(/^-/, '').split(/\s+/)[0]!);
    expect(programs.length).toBeGreaterThan(0);
    for (const program of programs) {
      if (['/usr/bin/k3s', '/sbin/modprobe'].includes(program)) continue;
      expect(statSync(join(ROOTFS, program)).mode & 0o111).not.toBe(0);
    }
  });
});

describe('kernel arguments (bootc kargs.d)', () => {
  const kargs = readFileSync(join(ROOTFS, 'usr/lib/bootc/kargs.d/10-secai.toml'), 'utf8');
  const listed = JSON.parse(kargs.match(/^kargs = (\[.*\])$/m)![1]!) as string[];

  it('has SecAI OS’s hardening arguments and puts iommu=force back', () => {
    expect(listed).toEqual(
      expect.arrayContaining(['slab_nomerge', 'init_on_alloc=1', 'init_on_free=1', 'page_alloc.shuffle=1', 'randomize_kstack_offset=on', 'vsyscall=none', 'lockdown=confidentiality', 'iommu=force']),
    );
  });
});

describe('Containerfile', () => {
  // Instructions on one line each: continuation lines joined.
  const containerfile = readFileSync(join(IMAGE, 'Containerfile'), 'utf8').replace(/\\\n\s*/g, ' ');

  it('copies only paths that exist in the repository (the k3s bundle and the build stage aside)', () => {
    const copies = [...containerfile.matchAll(/^COPY (.+) \S+$/gm)].map((match) => match[1]!).filter((args) => !args.startsWith('--from='));
    const sources = copies.flatMap((args) => args.split(/\s+/));
    expect(sources.length).toBeGreaterThan(0);
    for (const source of sources.filter((path) => !path.includes('${K3S_BUNDLE}'))) {
      expect(existsSync(join(REPO_ROOT, source))).toBe(true);
    }
  });

  it('installs the hardening with the same script the chroot test runs, and ends with bootc’s lint', () => {
    expect(containerfile).toMatch(/^RUN .*&& \/tmp\/node-image\/install-node-hardening\.sh --k3s-bundle \/tmp\/k3s-bundle /m);
    const runs = [...containerfile.matchAll(/^RUN (.+)$/gm)].map((match) => match[1]);
    expect(runs.at(-1)).toBe('bootc container lint');
  });
});

function scriptsUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return scriptsUnder(path);
    return readFileSync(path).subarray(0, 20).toString('utf8').startsWith('#!/usr/bin/env bash') ? [path] : [];
  });
}

describe('shellcheck', () => {
  const scripts = ['node-image', 'hack/k3s', 'hack/k3d', 'test/node-image'].flatMap((dir) => scriptsUnder(join(REPO_ROOT, dir))).map((path) => relative(REPO_ROOT, path));

  it('finds the scripts', () => {
    expect(scripts).toEqual(
      expect.arrayContaining([
        'node-image/install-node-hardening.sh',
        'node-image/rootfs/usr/libexec/secai/secai-base-firewall',
        'node-image/rootfs/usr/sbin/secai-vault-setup',
        'hack/k3s/install-server.sh',
        'hack/k3d/up.sh',
        'test/node-image/make-debian-root.sh',
      ]),
    );
  });

  it.each(scripts)('%s is strict bash and passes shellcheck', async (script) => {
    const text = readFileSync(join(REPO_ROOT, script), 'utf8');
    // Sourced libraries inherit the options of the script that sources them.
    if (!/lib(\.sh)?$/.test(script)) expect(text).toContain('\nset -euo pipefail\n');
    const result = await run('shellcheck', ['-x', script], { cwd: REPO_ROOT }).catch((error: { stdout: string }) => ({ stdout: error.stdout }));
    expect(result.stdout).toBe('');
  });
});
