import path from 'node:path';
import type { Iroh, NodeAddr } from '@number0/iroh';

// The few blob-store operations images need, over the node's Iroh (hex hashes in and out, as
// Blixard writes them; Iroh's own form is base32). Everything else in src/images talks to this
// interface, so the download engine is tested with a fake.
//
// Tags: iroh-ffi 0.35 deletes a blob only through a tag that points at it (deleteBlob looks the
// tag up), and offers no other way to list or remove tags. So every blob an image consists of is
// added or downloaded under a named tag: each piece under blixard/piece/<image>/<index>, the
// collection root under blixard/image/<image>, its names blob under blixard/meta/<image>. A
// piece two images share has two tags; it is deleted only when neither image needs it.

export interface PieceBlobs {
  /** Whether the store holds the blob whole. */
  isComplete(hex: string): Promise<boolean>;
  /**
   * One iroh-blobs download of one blob from one provider. Resolves when iroh's download ends,
   * however it ended (callers check isComplete); rejects on an error. It cannot be cancelled.
   */
  download(hex: string, provider: NodeAddr, tag: string, onProgress: (offset: number) => void): Promise<{ bytesRead: number }>;
  /** Copies a file into the store under `tag`; its hash. */
  addFile(file: string, tag: string): Promise<string>;
  /** Writes a complete blob to a new file. */
  exportTo(hex: string, file: string): Promise<void>;
  /** A small blob's bytes (hash sequences, names): iroh-ffi returns an array of numbers, slow for big data. */
  read(hex: string): Promise<Buffer>;
  addBytes(bytes: Buffer, tag: string): Promise<string>;
  /** An Iroh collection of existing blobs, its root tagged `tag`; the root's hash. */
  createCollection(entries: { name: string; hex: string }[], tag: string): Promise<string>;
  /** Deletes a blob (through a tag that points at it: without one, nothing happens). */
  delete(hex: string): Promise<void>;
  /** Resolves once blobs among `hexes` deleted here lately may be written again (see
   * DELETE_SETTLE_MS); at once when none was. Writes wait for it anyway: this lets a caller wait
   * before it starts counting time. */
  settle(hexes: string[]): Promise<void>;
}

type IrohModule = typeof import('@number0/iroh');
let loaded: IrohModule | undefined;
async function irohModule(): Promise<IrohModule> {
  return (loaded ??= await import('@number0/iroh'));
}

/**
 * How long after a blob is deleted before the same hash is written again. iroh-blobs 0.35's file
 * store removes a deleted blob's files (named by its hash) only when the write transaction that
 * deleted it commits, and it batches transactions for up to ~0.5 s. A download of the same hash
 * that begins in between writes into files that commit then unlinks: the entry ends "complete"
 * with no data behind it, and every later download of it fails at once ("A network or IO
 * operation failed") until it is deleted again. Seen when an image was pulled right after it was
 * removed (cache eviction; the images bench): pulling, removing and pulling again on a busy
 * machine, 2-4 pulls in 40 failed so; none with this fence.
 */
export const DELETE_SETTLE_MS = 1_500;

export async function irohPieceBlobs(iroh: Iroh, o: { settleMs?: number } = {}): Promise<PieceBlobs> {
  const m = await irohModule();
  const id = (hex: string) => m.Hash.fromString(hex).toString();
  const hexOfIroh = (h: string) => m.Hash.fromString(h).toString('hex');
  const tagOf = (tag: string) => m.SetTagOption.named([...Buffer.from(tag, 'utf8')]);
  const settleMs = o.settleMs ?? DELETE_SETTLE_MS;
  const deletedAt = new Map<string, number>();
  /** When the latest of these blobs (all, when not given) was deleted here; -Infinity: none. */
  const deletedLast = (hexes: Iterable<string> = deletedAt.keys()): number => {
    let at = -Infinity;
    for (const h of hexes) at = Math.max(at, deletedAt.get(h) ?? -Infinity);
    return at;
  };
  /** Waits until deletions made up to `at` are surely committed: the batch time has passed, and
   * a store request (about `probe`) has been served since (the store commits a transaction older
   * than its limit when it serves the next one). */
  const settledSince = async (at: number, probe = '0'.repeat(64)): Promise<void> => {
    if (at === -Infinity) return;
    // (Timers round to whole milliseconds and may wake a fraction early.)
    for (let wait = at + settleMs - performance.now(); wait > 0; wait = at + settleMs - performance.now()) await new Promise((r) => setTimeout(r, Math.ceil(wait)));
    const probedAt = performance.now();
    await iroh.blobs.status(id(probe)).catch(() => {});
    // What this request settled is settled for everyone.
    for (const [h, t] of deletedAt) if (t + settleMs <= probedAt) deletedAt.delete(h);
  };
  return {
    async isComplete(hex) {
      const st = await iroh.blobs.status(id(hex));
      return st.type === 'Complete';
    },
    async download(hex, provider, tag, onProgress) {
      await settledSince(deletedLast([hex]), hex);
      return new Promise((resolve, reject) => {
        let bytesRead = 0;
        // An abort reaches the callback as an error (the binding has no Abort event): kept, so
        // the attempt fails with what Iroh said rather than as a silent short transfer.
        let failed: Error | null = null;
        iroh.blobs
          .download(id(hex), new m.BlobDownloadOptions(m.BlobFormat.Raw, [provider], tagOf(tag)), (err, p) => {
            if (err) {
              failed ??= err;
              return;
            }
            if (p.progress) onProgress(Number(p.progress.offset));
            else if (p.allDone) bytesRead = Number(p.allDone.bytesRead);
          })
          .then(() => (failed ? reject(failed) : resolve({ bytesRead })), reject);
      });
    },
    async addFile(file, tag) {
      await settledSince(deletedLast());
      return new Promise<string>((resolve, reject) => {
        iroh.blobs
          .addFromPath(path.resolve(file), false, tagOf(tag), { wrap: false }, (err, p) => {
            if (err) reject(err);
            else if (p.allDone) resolve(hexOfIroh(p.allDone.hash));
          })
          .catch(reject);
      });
    },
    async exportTo(hex, file) {
      await iroh.blobs.export(id(hex), path.resolve(file), m.BlobExportFormat.Blob, m.BlobExportMode.Copy);
    },
    async read(hex) {
      return Buffer.from(await iroh.blobs.readToBytes(id(hex)));
    },
    async addBytes(bytes, tag) {
      await settledSince(deletedLast());
      const r = await iroh.blobs.addBytesNamed([...bytes], tag);
      return hexOfIroh(r.hash);
    },
    async createCollection(entries, tag) {
      await settledSince(deletedLast());
      const c = new m.Collection();
      for (const e of entries) c.push(e.name, id(e.hex));
      const r = await iroh.blobs.createCollection(c, tagOf(tag), []);
      return hexOfIroh(r.hash);
    },
    async settle(hexes) {
      const at = deletedLast(hexes);
      await settledSince(at, hexes.find((h) => deletedAt.get(h) === at));
    },
    async delete(hex) {
      try {
        await iroh.blobs.deleteBlob(id(hex));
      } finally {
        deletedAt.set(hex, performance.now());
      }
    },
  };
}

export const tags = {
  piece: (imageHex: string, index: number) => `blixard/piece/${imageHex}/${index}`,
  image: (imageHex: string) => `blixard/image/${imageHex}`,
  meta: (imageHex: string) => `blixard/meta/${imageHex}`,
};
