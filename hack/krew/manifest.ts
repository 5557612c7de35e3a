// Writes the krew manifest of `kubectl secai` for a release archive made by `npm pack` (the
// project publishes none): the archive's real sha256 and location, the plugin's entry point in it.
//
//   npx tsx hack/krew/manifest.ts <secai-fleet-x.y.z.tgz> [uri]   > secai.yaml
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { stringify } from 'yaml';

export function krewManifest(archive: Buffer, uri: string, version: string): string {
  return stringify({
    apiVersion: 'krew.googlecontainertools.github.com/v1alpha2',
    kind: 'Plugin',
    metadata: { name: 'secai' },
    spec: {
      version: `v${version}`,
      shortDescription: 'SecAI fleet status, reasons and offline evidence',
      description:
        'Shows a SecAI fleet in one table (nodes by condition and why failing nodes fail, models by phase with rejection stages, policies and rollouts in progress) and explains why one node is not compliant or not attested, with the Events that led there. Needs Node 24 on PATH.',
      platforms: [{ selector: { matchLabels: { os: 'linux' } }, uri, sha256: createHash('sha256').update(archive).digest('hex'), bin: 'package/bin/kubectl-secai.mjs' }],
    },
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const path = process.argv[2];
  if (!path) {
    process.stderr.write('usage: manifest.ts <archive.tgz> [uri]\n');
    process.exit(2);
  }
  const version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  process.stdout.write(krewManifest(readFileSync(path), process.argv[3] ?? pathToFileURL(resolve(path)).href, version));
}
