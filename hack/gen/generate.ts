// Writes every generated artefact: CRD YAML (crds/) and CR types (api/gen/). `npm run generate`.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RESOURCES } from '../../api/crd/index.js';
import { crdFileName, renderCrdYaml, renderTypes } from '../../api/crd/render.js';
import { BASE_RULESET_PATH, renderBaseRuleset } from '../../node-image/base-ruleset.js';
import { chartCrdTemplates } from '../../test/chart/chart-crd-templates.js';

export function generatedFiles(root: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const def of RESOURCES) files.set(join(root, 'crds', crdFileName(def)), renderCrdYaml(def));
  files.set(join(root, 'api', 'gen', 'crd-types.ts'), renderTypes());
  files.set(join(root, BASE_RULESET_PATH), renderBaseRuleset());
  for (const [path, text] of chartCrdTemplates(root)) files.set(join(root, path), text);
  return files;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const root = new URL('../..', import.meta.url).pathname;
  for (const [path, text] of generatedFiles(root)) {
    writeFileSync(path, text);
    console.log(`wrote ${path.slice(root.length)}`);
  }
}
