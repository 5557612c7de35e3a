// Asks the node's Tor client how it stands, over its control socket (never a TCP control port):
// authenticate with the cookie, GETINFO the bootstrap phase and whether a circuit is established,
// quit. The replies are bounded in size and time; anything unexpected is an error, which the duty
// reads as "Tor unavailable" (fail closed).
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';

export interface TorStatus {
  /** Tor's bootstrap progress, 0 to 100. */
  bootstrapPercent: number;
  /** The bootstrap phase's tag (done, conn_dir, requesting_status, ...). */
  tag: string;
  circuitEstablished: boolean;
  /** Whether Tor has a live consensus and enough directory information to build circuits. */
  enoughDirInfo: boolean;
}

const MAX_REPLY_BYTES = 64 * 1024;
const MAX_COOKIE_BYTES = 64;
const TIMEOUT_MS = 3000;

/** Parses the replies of AUTHENTICATE, GETINFO and QUIT (pure, for tests). */
export function parseControlReplies(text: string): TorStatus {
  const lines = text.split('\r\n').filter((l) => l.length > 0);
  if (lines[0] !== '250 OK') throw new Error(`Tor refused the control cookie: ${lines[0]?.slice(0, 120) ?? 'no answer'}`);
  const values = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const match = /^250[-+ ]([a-z/-]+)=(.*)$/.exec(line);
    if (match) values.set(match[1]!, match[2]!);
    else if (/^[45]\d\d/.test(line)) throw new Error(`Tor answered ${line.slice(0, 120)}`);
  }
  const phase = values.get('status/bootstrap-phase');
  const progress = phase ? /PROGRESS=(\d{1,3})/.exec(phase) : null;
  if (!phase || !progress) throw new Error('Tor gave no bootstrap phase');
  return {
    bootstrapPercent: Math.min(100, Number(progress[1])),
    tag: /TAG=([a-z_]{1,40})/.exec(phase)?.[1] ?? '',
    circuitEstablished: values.get('status/circuit-established') === '1',
    enoughDirInfo: values.get('status/enough-dir-info') === '1',
  };
}

export async function queryTorStatus(controlSocket: string, cookieFile: string): Promise<TorStatus> {
  const cookie = await readFile(cookieFile);
  if (cookie.length === 0 || cookie.length > MAX_COOKIE_BYTES) throw new Error('the control cookie has an unexpected size');
  const reply = await new Promise<string>((resolve, reject) => {
    const socket = connect(controlSocket);
    const chunks: Buffer[] = [];
    let bytes = 0;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`Tor's control socket did not answer within ${TIMEOUT_MS} ms`));
    }, TIMEOUT_MS);
    socket.on('connect', () =>
      socket.write(`AUTHENTICATE ${cookie.toString('hex')}\r\nGETINFO status/bootstrap-phase status/circuit-established status/enough-dir-info\r\nQUIT\r\n`),
    );
    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > MAX_REPLY_BYTES) {
        socket.destroy();
        clearTimeout(timer);
        reject(new Error('Tor\'s control reply is too long'));
        return;
      }
      chunks.push(chunk);
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
  });
  return parseControlReplies(reply);
}
