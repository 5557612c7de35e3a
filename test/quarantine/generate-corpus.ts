// Writes the adversarial corpus into a directory with corpus.json (name, defect, expected stage and
// reason, pin overrides). Usage: npx tsx test/quarantine/generate-corpus.ts <dir>
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildAdversarialCorpus } from './adversarial-corpus.js';

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: generate-corpus.ts <dir>\n');
  process.exit(2);
}
mkdirSync(dir, { recursive: true });
const table = buildAdversarialCorpus().map(({ bytes, ...entry }) => {
  writeFileSync(join(dir, entry.name), bytes);
  return { ...entry, sha256: createHash('sha256').update(bytes).digest('hex'), sizeBytes: bytes.length };
});
writeFileSync(join(dir, 'corpus.json'), `${JSON.stringify(table, null, 2)}\n`);
process.stdout.write(`${table.length} adversarial files in ${dir}\n`);
