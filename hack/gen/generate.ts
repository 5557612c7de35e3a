// Writes every generated artefact: CRD YAML (crds/) and CR types (api/gen/). `npm run generate`.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RESOURCES } from '../../api/crd/index.js';
import { crdFileName, renderCrdYaml, renderTypes } from '../../api/crd/render.js';
import { BASE_RULESET_PATH, renderBaseRuleset } from '../../node-image/base-ruleset.js';
import { chartCrdTemplates } from '../../test/chart/chart-crd-templates.js';

export function generatedFiles(root: string): Map<string, string> {
  const files = new Map<string, string>();
  const crds = new Map(RESOURCES.map((def) => [crdFileName(def), renderCrdYaml(def)]));
  for (const [name, text] of crds) files.set(join(root, 'crds', name), text);
  files.set(join(root, 'api', 'gen', 'crd-types.ts'), renderTypes());
  files.set(join(root, BASE_RULESET_PATH), renderBaseRuleset());
  // From the CRDs rendered now, not the files on disk: one run brings everything up to date.
  for (const [path, text] of chartCrdTemplates(root, crds)) files.set(join(root, path), text);
  return files;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const root = new URL('../..', import.meta.url).pathname;
  for (const [path, text] of generatedFiles(root)) {
    writeFileSync(path, text);
    console.log(`wrote ${path.slice(root.length)}`);
  }
}
