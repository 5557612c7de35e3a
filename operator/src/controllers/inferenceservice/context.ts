// What the InferenceService controller is given of the fleet context: only what it uses.
import type { FleetContext } from '../../fleet/context.js';

export type InferenceServiceControllerContext = Pick<FleetContext, 'applier' | 'caches' | 'clock' | 'events' | 'logger' | 'placement' | 'plans' | 'resolver' | 'runtimeMetrics'>;
