// The agent's own vault lock (agents/src/vault/vault-lock.ts: the probe and cryptsetupLockExecutor,
// as agents/src/cmd/agent.ts wires them with its defaults), bundled by build-image.sh into the lab
// disk with the project's Node 24 and run by the image's report unit, so that the close the agent
// does on a lock request runs against a real dm-crypt mapping in a real kernel. Prints one JSON line;
// exits non-zero unless the vault was open before and closed after.
import { cryptsetupLockExecutor, mapperLockProbe } from '../../agents/src/vault/vault-lock.js';

const mapperName = process.argv[2] ?? 'secai-vault';
const mountPoint = process.argv[3] ?? '/var/lib/secai/vault';
const probe = mapperLockProbe(mapperName);
const openBefore = await probe.isOpen();
let error: string | undefined;
try {
  await cryptsetupLockExecutor({ mapperName, mountPoint }).close();
} catch (err) {
  error = (err as Error).message;
}
const openAfter = await probe.isOpen();
console.log(JSON.stringify({ mapperName, mountPoint, openBefore, openAfter, ...(error ? { error } : {}) }));
process.exitCode = openBefore && !openAfter && !error ? 0 : 1;
