// What the EgressPolicy controller is given of the fleet context: only what it uses.
import type { FleetContext } from '../../fleet/context.js';

export type EgressPolicyControllerContext = Pick<FleetContext, 'applier' | 'caches' | 'client' | 'clock' | 'events' | 'intake' | 'logger' | 'namespace' | 'plans' | 'rollouts' | 'runtimeMetrics'>;
