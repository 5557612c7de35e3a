// What the VaultPolicy controller is given of the fleet context: only what it uses.
import type { FleetContext } from '../../fleet/context.js';

export type VaultPolicyControllerContext = Pick<FleetContext, 'applier' | 'caches' | 'clock' | 'events' | 'logger' | 'plans' | 'runtimeMetrics'>;
