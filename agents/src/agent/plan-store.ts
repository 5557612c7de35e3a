// The last plan the node enforced, kept on disk so that the agent re-applies it at start before it
// talks to anyone: a node that loses its operator keeps enforcing (fail closed).
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { NodePlan } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { MAX_MESSAGE_BYTES, planDigest } from '../../../api/proto/protocol.js';

export class PlanStore {
  private readonly path: string;

  constructor(stateDir: string) {
    this.path = join(stateDir, 'plan.pb');
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  }

  /** The stored plan, or undefined when there is none; a corrupt or tampered file is an error. */
  load(): NodePlan | undefined {
    let bytes: Buffer;
    try {
      bytes = readFileSync(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    if (bytes.length > MAX_MESSAGE_BYTES) throw new Error(`${this.path} is larger than any plan (${bytes.length} bytes)`);
    const plan = NodePlan.decode(bytes);
    if (planDigest(plan) !== plan.digest) throw new Error(`${this.path} does not match its digest`);
    return plan;
  }

  /** Writes atomically: a crash leaves either the old plan or the new one, never half of one. */
  save(plan: NodePlan): void {
    const bytes = NodePlan.encode(plan).finish();
    const tmp = `${this.path}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, bytes);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.path);
    const dirFd = openSync(dirname(this.path), 'r');
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  }
}
