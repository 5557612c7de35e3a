// A DutyContext for running one duty's converge() outside a NodeAgent: it keeps the drifts the duty
// records and counts its wakes, so a test can see what the agent would have been told.
import type { DutyContext } from '../../agents/src/agent/node-agent.js';
import type { DriftKind } from '../../api/proto/duty-results.js';

export interface RecordingDutyContext {
  ctx: DutyContext;
  drifts: { kind: DriftKind; detail: string; at: number }[];
  wakes: () => number;
  changes: () => number;
}

export function recordingDutyContext(): RecordingDutyContext {
  const drifts: RecordingDutyContext['drifts'] = [];
  let wakes = 0;
  let changes = 0;
  return {
    ctx: {
      drift: async (kind, detail) => void drifts.push({ kind, detail, at: Date.now() }),
      changed: () => void changes++,
      wake: () => void wakes++,
    },
    drifts,
    wakes: () => wakes,
    changes: () => changes,
  };
}
