// The user the node's Tor client runs as, looked up in /etc/passwd (bounded): its uid is the only
// one the egress table lets reach the Tor network.
import { readFileSync } from 'node:fs';

const MAX_PASSWD_BYTES = 1024 * 1024;

export function lookUpUser(name: string, passwdPath = '/etc/passwd'): { name: string; uid: number; gid: number } | undefined {
  let text: string;
  try {
    const bytes = readFileSync(passwdPath);
    if (bytes.length > MAX_PASSWD_BYTES) return undefined;
    text = bytes.toString('utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const [user, , uid, gid] = line.split(':');
    if (user === name && /^\d{1,10}$/.test(uid ?? '') && /^\d{1,10}$/.test(gid ?? '')) return { name, uid: Number(uid), gid: Number(gid) };
  }
  return undefined;
}
