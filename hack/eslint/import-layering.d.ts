import type { Rule } from 'eslint';

export function layeringViolation(fromFile: string, toFile: string): string | undefined;
declare const rule: Rule.RuleModule;
export default rule;
