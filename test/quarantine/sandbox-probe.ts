// Runs inside the scanner sandbox in place of the scanner, to show what the sandbox allows. The
// first argument says what to do; "isolation" prints what the process can see and do.
import { createConnection } from 'node:net';
import { networkInterfaces } from 'node:os';
import { readFileSync, readdirSync, writeFileSync, openSync } from 'node:fs';

async function connects(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port, timeout: 2000 });
    socket.on('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.on('timeout', () => {
      socket.destroy();
      resolve('timeout');
    });
    socket.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
}

function attempt(action: () => unknown): string {
  try {
    action();
    return 'allowed';
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? 'error';
  }
}

async function isolation(port: number): Promise<void> {
  const status = readFileSync('/proc/self/status', 'utf8');
  const field = (name: string) => status.match(new RegExp(`^${name}:\\s*(.*)$`, 'm'))?.[1]?.trim();
  const report = {
    uid: process.getuid?.(),
    env: Object.keys(process.env).sort(),
    interfaces: Object.keys(networkInterfaces()),
    hostLoopback: await connects('127.0.0.1', port),
    capEff: field('CapEff'),
    noNewPrivs: field('NoNewPrivs'),
    readArtifact: attempt(() => readFileSync('/quarantine/artifact').length),
    writeArtifact: attempt(() => openSync('/quarantine/artifact', 'r+')),
    writeProject: attempt(() => writeFileSync(`${process.cwd()}/sandbox-probe-was-here`, 'x')),
    writeTmp: attempt(() => writeFileSync('/tmp/probe', 'x')),
    rootVisible: attempt(() => readdirSync('/root')),
    etcVisible: attempt(() => readdirSync('/etc')),
    pids: readdirSync('/proc').filter((p) => /^\d+$/.test(p)).length,
    project: readdirSync(process.cwd()).sort(),
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

const [what, arg] = process.argv.slice(2);
switch (what) {
  case 'isolation':
    await isolation(Number(arg));
    break;
  case 'exit':
    process.exit(Number(arg));
    break;
  case 'abort':
    process.abort();
    break;
  case 'hang':
    for (;;);
  case 'memory': {
    const hoard: Buffer[] = [];
    for (;;) hoard.push(Buffer.alloc(64 * 1024 * 1024, 1));
  }
  case 'file-size':
    writeFileSync('/tmp/big', Buffer.alloc(128 * 1024 * 1024, 1));
    break;
  case 'garbage':
    process.stdout.write('{"version":1,"stages":"all good"}\n');
    break;
  default:
    process.exit(64);
}
