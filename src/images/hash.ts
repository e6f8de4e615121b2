import { createReadStream } from 'node:fs';

// The whole-file BLAKE3 that `b3sum` prints, streamed so that an image of any size is hashed in
// constant memory. Iroh's blob hash of the same bytes (raw format) is this same value.

export interface FileDigest {
  hash: string; // blake3:<64 hex>
  size: number;
}

export async function blake3File(file: string): Promise<FileDigest> {
  // Loaded on first use: most CLI runs hash no file, and every run pays for what it imports.
  const { createBLAKE3 } = await import('hash-wasm');
  const hasher = await createBLAKE3();
  hasher.init();
  let size = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
    const b = chunk as Buffer;
    hasher.update(b);
    size += b.length;
  }
  return { hash: `blake3:${hasher.digest('hex')}`, size };
}

export function hexOf(ref: string): string {
  return ref.startsWith('blake3:') ? ref.slice('blake3:'.length) : ref;
}
