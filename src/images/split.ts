import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rm, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { PieceBlobs } from './iroh-blobs.js';
import { pieceCount, type PieceManifest } from './pieces.js';

// Streaming both ways between a whole file and its pieces, in constant memory:
// - splitIntoPieces: an upload (or a local file) becomes piece files in a spool directory while
//   its whole-file BLAKE3 is computed, in one pass; nothing is imported before that hash is known
//   to be the one announced;
// - PieceVerifier: pieces, in order and as they arrive, are hashed into the whole-file BLAKE3
//   (and, when asked, written one after another into the file a hypervisor reads). It runs while
//   the download goes on, so checking the image at the end costs only the last pieces.

export interface SplitResult {
  hash: string;
  size: number;
  files: string[];
}

export async function splitIntoPieces(body: AsyncIterable<Buffer | Uint8Array>, dir: string, pieceSize: number): Promise<SplitResult> {
  const { createBLAKE3 } = await import('hash-wasm');
  const hasher = await createBLAKE3();
  hasher.init();
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const files: string[] = [];
  let fh: FileHandle | undefined;
  let inPiece = 0;
  let size = 0;
  try {
    for await (const raw of body) {
      const chunk = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
      hasher.update(chunk);
      size += chunk.length;
      let off = 0;
      while (off < chunk.length) {
        if (!fh) {
          const f = path.join(dir, String(files.length));
          fh = await open(f, 'w', 0o600);
          files.push(f);
          inPiece = 0;
        }
        const n = Math.min(pieceSize - inPiece, chunk.length - off);
        await fh.write(chunk, off, n);
        off += n;
        inPiece += n;
        if (inPiece === pieceSize) {
          await fh.close();
          fh = undefined;
        }
      }
    }
  } finally {
    await fh?.close();
  }
  return { hash: `blake3:${hasher.digest('hex')}`, size, files };
}

/**
 * Hashes pieces in order as they become available (`ready` in any order), optionally writing
 * them into `out`. `finish` resolves with the whole file's hash and size once every piece passed.
 */
export class PieceVerifier {
  private readonly ready_ = new Set<number>();
  private next = 0;
  private running: Promise<void> = Promise.resolve();
  private pumping = false;
  private failed: unknown;
  private hasher: Awaited<ReturnType<typeof import('hash-wasm').createBLAKE3>> | undefined;
  private outFh: FileHandle | undefined;
  private size = 0;
  private readonly total: number;
  /** Bytes checked so far. */
  verified = 0;

  constructor(
    private readonly blobs: PieceBlobs,
    private readonly m: PieceManifest,
    private readonly tmpDir: string,
    private readonly out: string | null,
  ) {
    this.total = pieceCount(m.size, m.pieceSize);
  }

  ready(index: number): void {
    if (index < this.next || this.ready_.has(index)) return;
    this.ready_.add(index);
    this.pump();
  }

  async finish(): Promise<{ hash: string; size: number }> {
    for (;;) {
      await this.running;
      if (this.failed) throw this.failed;
      if (this.next >= this.total) break;
      if (!this.ready_.has(this.next)) throw new Error(`piece ${this.next} of ${this.m.hash} was never fetched`);
      this.pump();
    }
    await this.init();
    await this.outFh?.close();
    this.outFh = undefined;
    return { hash: `blake3:${this.hasher!.digest('hex')}`, size: this.size };
  }

  async abort(): Promise<void> {
    this.failed ??= new Error('aborted');
    await this.running.catch(() => {});
    await this.outFh?.close().catch(() => {});
    this.outFh = undefined;
  }

  private pump(): void {
    if (this.pumping || this.failed) return;
    this.pumping = true;
    this.running = this.running.then(async () => {
      try {
        await this.init();
        while (!this.failed && this.ready_.has(this.next)) {
          this.ready_.delete(this.next);
          await this.feed(this.next);
          this.next++;
        }
      } catch (e) {
        this.failed = e;
      } finally {
        this.pumping = false;
      }
    });
  }

  private async init(): Promise<void> {
    if (this.hasher) return;
    const { createBLAKE3 } = await import('hash-wasm');
    const h = await createBLAKE3();
    h.init();
    this.hasher = h;
    await mkdir(this.tmpDir, { recursive: true, mode: 0o700 });
    if (this.out) this.outFh = await open(this.out, 'w', 0o600);
  }

  private async feed(index: number): Promise<void> {
    const tmp = path.join(this.tmpDir, `${randomBytes(6).toString('hex')}.${index}`);
    await this.blobs.exportTo(this.m.pieces[index]!, tmp);
    try {
      for await (const chunk of createReadStream(tmp, { highWaterMark: 1 << 20 })) {
        const b = chunk as Buffer;
        this.hasher!.update(b);
        if (this.outFh) await this.outFh.write(b);
        this.size += b.length;
        this.verified += b.length;
      }
    } finally {
      await unlink(tmp).catch(() => {});
    }
  }
}

export async function removeQuietly(p: string): Promise<void> {
  await rm(p, { recursive: true, force: true }).catch(() => {});
}
