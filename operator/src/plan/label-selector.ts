// metav1.LabelSelector matching: every matchLabels pair and every matchExpressions requirement must
// hold. An absent or empty selector selects everything (the CRDs say "empty selects every fleet node").
import type { LabelSelector, LabelSelectorRequirement } from '../../../api/gen/crd-types.js';

export type Labels = Readonly<Record<string, string>>;

function requirementHolds(req: LabelSelectorRequirement, labels: Labels): boolean {
  const has = Object.prototype.hasOwnProperty.call(labels, req.key);
  const value = labels[req.key];
  switch (req.operator) {
    case 'In':
      return has && (req.values ?? []).includes(value as string);
    case 'NotIn':
      return !has || !(req.values ?? []).includes(value as string);
    case 'Exists':
      return has;
    case 'DoesNotExist':
      return !has;
    default:
      // An operator this code does not know selects nothing (fail closed).
      return false;
  }
}

export function matchesSelector(selector: LabelSelector | undefined, labels: Labels): boolean {
  if (!selector) return true;
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[key] !== value) return false;
  }
  return (selector.matchExpressions ?? []).every((req) => requirementHolds(req, labels));
}
