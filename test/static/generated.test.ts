// Generated artefacts match their sources: regenerate with `make generate` when this fails.
import { readFileSync } from 'node:fs';
import { REPO_ROOT } from '../../hack/control-plane/control-plane.js';
import { generatedFiles } from '../../hack/gen/generate.js';

const files = [...generatedFiles(REPO_ROOT)].map(([path, text]) => ({ path: path.slice(REPO_ROOT.length + 1), text }));

it.each(files)('$path is up to date', ({ path, text }) => {
  expect(readFileSync(`${REPO_ROOT}/${path}`, 'utf8')).toBe(text);
});
