import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Iroh } from '@number0/iroh';

// The node's content-addressed store is Iroh's blob store. Uploads are spooled to a file in the
// data dir (never held in memory) while their BLAKE3 is computed, and imported into Iroh only when
// that hash is the one the client announced: bytes that do not match their name are never stored.

export class HashMismatchError extends Error {
  constructor(readonly expected: string, readonly actual: string) {
    super(`content hash ${actual} does not match the announced ${expected}; nothing was stored`);
    this.name = 'HashMismatchError';
  }
}

export interface BlobInfo {
  hash: string; // blake3:<hex>
  size: number;
}

export class BlobStore {
  private constructor(
    private readonly iroh: Iroh,
    private readonly incoming: string,
    private readonly iroh_: typeof import('@number0/iroh'),
  ) {}

  static async open(iroh: Iroh, incomingDir: string): Promise<BlobStore> {
    await mkdir(incomingDir, { recursive: true, mode: 0o700 });
    // Spool files of uploads cut short by a crash are garbage.
    for (const f of await readdir(incomingDir)) if (f.endsWith('.part')) await unlink(path.join(incomingDir, f)).catch(() => {});
    return new BlobStore(iroh, incomingDir, await import('@number0/iroh'));
  }

  private irohHash(ref: string): string {
    return this.iroh_.Hash.fromString(ref.replace(/^blake3:/, '')).toString();
  }

  /** Size of a complete blob, or null when the store does not hold all of it. */
  async completeSize(hash: string): Promise<number | null> {
    const st = await this.iroh.blobs.status(this.irohHash(hash));
    return st.type === 'Complete' ? Number(st.size) : null;
  }

  async has(hash: string): Promise<boolean> {
    return (await this.completeSize(hash)) !== null;
  }

  /** Spools an upload to disk, hashing as it goes, and imports it only if it is what was announced. */
  async importStream(expected: string, body: Readable): Promise<BlobInfo> {
    const spool = path.join(this.incoming, `${randomBytes(8).toString('hex')}.part`);
    try {
      const { createBLAKE3 } = await import('hash-wasm');
      const hasher = await createBLAKE3();
      hasher.init();
      const hashing = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          hasher.update(chunk);
          cb(null, chunk);
        },
      });
      await pipeline(body, hashing, createWriteStream(spool, { mode: 0o600 }));
      const actual = `blake3:${hasher.digest('hex')}`;
      if (actual !== expected) throw new HashMismatchError(expected, actual);
      return await this.importFile(spool, expected);
    } finally {
      await unlink(spool).catch(() => {});
    }
  }

  /**
   * Copies a file into the store under a stable tag per content (kept from garbage collection
   * however often it is uploaded). Iroh's own hash must agree with what the caller verified.
   */
  async importFile(file: string, expected: string): Promise<BlobInfo> {
    const { SetTagOption } = this.iroh_;
    const tag = [...Buffer.from(`blixard/blob/${expected.slice('blake3:'.length)}`)];
    const done = new Promise<string>((resolve, reject) => {
      void this.iroh.blobs
        .addFromPath(path.resolve(file), false, SetTagOption.named(tag), { wrap: false }, (err, p) => {
          if (err) reject(err);
          else if (p.allDone) resolve(p.allDone.hash);
        })
        .catch(reject);
    });
    const hash = `blake3:${this.iroh_.Hash.fromString(await done).toString('hex')}`;
    if (hash !== expected) {
      // The file changed between our hash and Iroh's read of it: do not keep either.
      await this.iroh.blobs.deleteBlob(this.irohHash(hash)).catch(() => {});
      throw new HashMismatchError(expected, hash);
    }
    return { hash, size: (await this.completeSize(hash)) ?? 0 };
  }
}
