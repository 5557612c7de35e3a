// Names the operator puts on objects, in one place.
/** The server-side-apply field manager of the operator (the agent has its own). */
export const FIELD_MANAGER = 'secai-fleet-operator';
/** Events' reportingController. */
export const REPORTING_CONTROLLER = 'secai.io/fleet-operator';
/** Keeps a Model until every node has confirmed it no longer holds the artifact. */
export const MODEL_FINALIZER = 'secai.io/model-removal';
/** On a fleet Node until its agent reports the current plan applied and the node compliant. */
export const NOT_COMPLIANT_TAINT = { key: 'secai.io/not-compliant', effect: 'NoSchedule' } as const;
/** The default fleet selector: Nodes with this label get a SecAINode. */
export const DEFAULT_FLEET_SELECTOR = 'secai.io/node=true';
/** Marks the ConfigMaps holding egress rollout records. */
export const ROLLOUT_RECORD_LABEL = 'secai.io/egress-rollout';
export const ROLLOUT_POLICY_ANNOTATION = 'secai.io/egress-policy';
export const MANAGED_BY_LABEL = { 'app.kubernetes.io/managed-by': FIELD_MANAGER };
/**
 * On a SecAINode, asks the operator to forget the node's verified audit head and any audit failure,
 * and to trust the node's next signed head as on first contact. The operator removes it once done.
 */
export const AUDIT_REBASELINE_ANNOTATION = 'secai.io/audit-rebaseline';
