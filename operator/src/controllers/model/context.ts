// What the Model controller is given of the fleet context: only what it uses.
import type { FleetContext } from '../../fleet/context.js';

export type ModelControllerContext = Pick<FleetContext, 'applier' | 'caches' | 'client' | 'clock' | 'events' | 'logger' | 'plans' | 'resolver' | 'runtimeMetrics'>;
