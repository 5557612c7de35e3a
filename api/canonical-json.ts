// Canonical JSON: object keys sorted by UTF-16 code units, no whitespace, undefined members
// dropped. Digests of plans and audit entries are taken over this form, so both ends of a contract
// compute the same bytes.
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  if (typeof value === 'number' && !Number.isFinite(value)) throw new Error('canonical JSON has no NaN or Infinity');
  if (typeof value === 'bigint') throw new Error('canonical JSON has no bigint; encode it as a string');
  return JSON.stringify(value);
}
