// Where the shared test control plane lives, and how tests reach it.
import { join } from 'node:path';
import { REPO_ROOT } from '../../hack/control-plane/control-plane.js';

export const TEST_OUTPUT = join(REPO_ROOT, '.test-output');
/** hack/run-tests.sh gives every run its own id, so that runs in one checkout do not collide. */
export const TEST_RUN_ID = process.env.SECAI_TEST_RUN_ID ?? 'default';
export const SHARED_CONTROL_PLANE_DIR = join(TEST_OUTPUT, `control-plane-${TEST_RUN_ID}`);

/** The kubeconfig of the control plane the global setup started (or the user's, with USE_EXISTING_CLUSTER). */
export function sharedKubeconfig(): string {
  const path = process.env.SECAI_TEST_KUBECONFIG;
  if (!path) throw new Error('SECAI_TEST_KUBECONFIG is unset: run tests through `npm test` (jest global setup)');
  return path;
}
