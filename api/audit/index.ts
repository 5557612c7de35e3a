// The audit verification contract shared by the agent (which builds proofs and signs heads) and the
// operator and auditors (who verify them).
export * from './merkle.js';
export * from './tree-head.js';
