// Durability on the node: fsync a file or a directory by path (a directory so that a rename or a
// new entry in it survives a crash).
import { open } from 'node:fs/promises';

export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
