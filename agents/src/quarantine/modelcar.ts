// KServe modelcar images: an OCI image whose layer (tar, optionally gzip) holds the model files
// under /models. The layer is read as it streams (its blob digest hashed by fetch.ts): tar-stream
// parses the entries, bounded in count and size; a path that leaves the archive root (`..`), a link
// or a device under models/, or more than one .gguf under models/ is refused; the one .gguf is
// written into the staging file and hashed on the way, and must be the Model's pin. Nothing else of
// the image is written anywhere.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import type { Readable, Writable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { extract, type Header } from 'tar-stream';
import { Reason, type ReasonCode } from './verdict.js';

export const MODELCAR_LAYER_TYPES = [
  'application/vnd.oci.image.layer.v1.tar',
  'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
];
export const IMAGE_CONFIG_TYPES = ['application/vnd.oci.image.config.v1+json', 'application/vnd.docker.container.image.v1+json'];

export const MODELCAR_LIMITS = {
  /** Entries in one layer (a model directory and a base image's files). */
  entries: 4096,
} as const;

export class ArchiveRefusal extends Error {
  constructor(
    readonly reason: ReasonCode,
    message: string,
  ) {
    super(message);
  }
}

/** The entry's path relative to the image root, or undefined when it leaves it; pure. */
export function archivePath(name: string): string | undefined {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) return undefined;
  return parts.join('/');
}

export interface ModelcarResult {
  /** The .gguf's path in the image, e.g. models/model.gguf; undefined when this layer has none. */
  path?: string;
  bytes: number;
}

/**
 * Reads one layer (`gzip` when its media type says so) and writes its one models/*.gguf into
 * `out`; rejects with an ArchiveRefusal. `pinSha256` is the Model's pin, checked at the end.
 */
export async function unpackModelcarLayer(body: Readable, out: Writable, gzip: boolean, pinSha256: string, maxBytes: number, limits = MODELCAR_LIMITS): Promise<ModelcarResult> {
  const tar = extract();
  let entries = 0;
  let found: string | undefined;
  let bytes = 0;
  const hash = createHash('sha256');
  tar.on('entry', (header: Header, stream, next) => {
    // A refused archive destroys the entry streams too; their errors are the refusal's.
    stream.on('error', () => undefined);
    const refuse = (reason: ReasonCode, message: string) => {
      stream.resume();
      tar.destroy(new ArchiveRefusal(reason, message));
    };
    if (++entries > limits.entries) return refuse(Reason.ArchiveTooManyEntries, `the layer has more than ${limits.entries} entries`);
    const path = archivePath(header.name);
    if (path === undefined) return refuse(Reason.ArchivePathEscape, `the entry ${header.name.slice(0, 100)} leaves the image root`);
    const underModels = path === 'models' || path.startsWith('models/');
    const type = header.type ?? 'file';
    if (underModels && type !== 'file' && type !== 'directory') return refuse(Reason.ArchiveLinkRefused, `models/ holds a ${type} (${path.slice(0, 100)}); only files and directories are read`);
    if (!underModels || type !== 'file' || !path.endsWith('.gguf')) {
      stream.on('end', next);
      stream.resume();
      return;
    }
    if (found !== undefined) return refuse(Reason.LayoutUnsupported, `more than one GGUF under models/ (${found.slice(0, 100)}, ${path.slice(0, 100)}); the node pulls exactly one`);
    if (header.size !== undefined && header.size > maxBytes) return refuse(Reason.TooLarge, `${path.slice(0, 100)} has ${header.size} bytes, more than the limit of ${maxBytes}`);
    found = path;
    void (async () => {
      for await (const chunk of stream) {
        bytes += (chunk as Buffer).length;
        hash.update(chunk as Buffer);
        if (!out.write(chunk)) await once(out, 'drain');
      }
      next();
    })().catch((e: unknown) => tar.destroy(e as Error));
  });
  try {
    await (gzip ? pipeline(body, createGunzip(), tar) : pipeline(body, tar));
  } catch (e) {
    if (e instanceof ArchiveRefusal) throw e;
    throw new ArchiveRefusal(Reason.ArchiveInvalid, `the layer is not a readable tar${gzip ? '+gzip' : ''}: ${(e as Error).message.slice(0, 200)}`);
  }
  if (found !== undefined && hash.digest('hex') !== pinSha256) throw new ArchiveRefusal(Reason.LayerNotPinned, `${found.slice(0, 100)} is not the pinned SHA-256`);
  return { ...(found !== undefined ? { path: found } : {}), bytes };
}
