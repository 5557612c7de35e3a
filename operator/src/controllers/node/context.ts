// What the Node controller is given of the fleet context: only what it uses.
import type { FleetContext } from '../../fleet/context.js';

export type NodeControllerContext = Pick<FleetContext, 'applier' | 'attestation' | 'auditVerdicts' | 'caches' | 'client' | 'clock' | 'events' | 'fleetMetrics' | 'intake' | 'logger' | 'placement' | 'plans' | 'resolver' | 'rollouts' | 'runtimeMetrics' | 'settings'>;
