// Starts one real control plane (etcd + kube-apiserver from hack/) for the whole test run and
// installs the CRDs, after building the operator's bundle (operator/build.ts). USE_EXISTING_CLUSTER=true with KUBECONFIG uses a cluster the user already has.
import { startControlPlane } from '../../hack/control-plane/control-plane.js';
import { installCrds } from '../../hack/control-plane/crds.js';
import { buildOperator } from '../../operator/build.js';
import { SHARED_CONTROL_PLANE_DIR } from './environment.js';

export default async function globalSetup(): Promise<void> {
  // Tests run the operator as it ships: the bundle, rebuilt from the sources of this run.
  await buildOperator();
  if (process.env.USE_EXISTING_CLUSTER === 'true') {
    const kubeconfig = process.env.KUBECONFIG;
    if (!kubeconfig) throw new Error('USE_EXISTING_CLUSTER=true needs KUBECONFIG');
    process.env.SECAI_TEST_KUBECONFIG = kubeconfig;
    await installCrds(kubeconfig);
    return;
  }
  const state = await startControlPlane({ dir: SHARED_CONTROL_PLANE_DIR });
  await installCrds(state.kubeconfig);
  process.env.SECAI_TEST_KUBECONFIG = state.kubeconfig;
  process.stderr.write(`\ncontrol plane for tests: ${state.apiServerUrl}, ready in ${state.startupMs} ms\n`);
}
