import { stopControlPlane } from '../../hack/control-plane/control-plane.js';
import { SHARED_CONTROL_PLANE_DIR } from './environment.js';

export default async function globalTeardown(): Promise<void> {
  if (process.env.USE_EXISTING_CLUSTER === 'true') return;
  await stopControlPlane(SHARED_CONTROL_PLANE_DIR);
}
