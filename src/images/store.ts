import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, mkdir, readFile, readdir, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { Iroh } from '@number0/iroh';
import { writeFileAtomic } from '../storage/index.js';
import { HashMismatchError } from './blobs.js';
import { Bitmap } from './bitmap.js';
import { hexOf } from './hash.js';
import { irohPieceBlobs, tags, type PieceBlobs } from './iroh-blobs.js';
import { checkPieceSize, DEFAULT_PIECE_SIZE, manifestProblem, parseHashSeq, pieceCount, pieceName, type PieceManifest } from './pieces.js';
import { PieceVerifier, removeQuietly, splitIntoPieces } from './split.js';

// The node's images: each one as pieces in the Iroh blob store (an Iroh collection of fixed-size
// pieces: what the node serves to peers), an index of them in <data-dir>/images/index.json, and,
// for images a VM here needs, the whole file a hypervisor reads, <data-dir>/images/<hex>,
// written out from the pieces and checked against the whole-file BLAKE3 as it is written.
//
// Disk use, for an image of S bytes: S for its pieces while cached; 2S while a VM here needs it
// (pieces + file; the cache removes the file once no VM needs it). While it arrives: an upload is
// split into piece files as it streams (S), then imported (S more) and the spool removed; a
// download writes pieces straight into the store (S), plus the file for the hypervisor when a VM
// waits for it. The whole-file blob is not kept: a third copy would serve nobody (peers fetch
// pieces), and images uploaded whole before pieces existed are converted on first use.

export interface StoredImage {
  /** blake3:<hex> of the whole file. */
  hash: string;
  size: number;
  pieceSize: number;
  pieceCount: number;
  /** The collection root, hex. */
  collection: string;
  /** complete: every piece here and the whole file verified; partial: a download under way or interrupted. */
  state: 'complete' | 'partial';
  addedAt: number;
  lastUsed: number;
}

interface IndexFile {
  version: 1;
  images: StoredImage[];
}

export class NotInStoreError extends Error {
  constructor(readonly hash: string) {
    super(`${hash} is not in this node's image store`);
    this.name = 'NotInStoreError';
  }
}

export interface ImageStoreOptions {
  /** <data-dir>/images: the index, files for hypervisors, and a spool. */
  dir: string;
  iroh?: Iroh;
  /** Instead of `iroh` (tests). */
  blobs?: PieceBlobs;
  pieceSize?: number;
  now?: () => number;
  log?: { warn(o: object, m?: string): void; info?(o: object, m?: string): void };
}

/** An image became complete here (with its manifest), or left (null). */
export type ImageListener = (hash: string, image: StoredImage | null, manifest: PieceManifest | null) => void;

export interface ImportResult {
  hash: string;
  size: number;
  pieces: number;
  collection: string;
  /** It was already here (nothing imported). */
  existed: boolean;
}

export class ImageStore {
  readonly blobs: PieceBlobs;
  readonly pieceSize: number;
  private readonly images = new Map<string, StoredImage>();
  /** Piece lists, read from each collection root on first need. */
  private readonly lists = new Map<string, { meta: string; pieces: string[] }>();
  private readonly busyCount = new Map<string, number>();
  private readonly writing = new Map<string, Promise<string>>();
  private readonly converting = new Map<string, Promise<boolean>>();
  private saving: Promise<void> = Promise.resolve();
  private saveTimer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  private readonly tmp: string;
  private readonly listeners = new Set<ImageListener>();

  private constructor(
    private readonly o: ImageStoreOptions,
    blobs: PieceBlobs,
  ) {
    this.blobs = blobs;
    this.pieceSize = o.pieceSize ?? DEFAULT_PIECE_SIZE;
    checkPieceSize(this.pieceSize);
    this.now = o.now ?? Date.now;
    this.tmp = path.join(o.dir, '.tmp');
  }

  static async open(o: ImageStoreOptions): Promise<ImageStore> {
    const blobs = o.blobs ?? (o.iroh ? await irohPieceBlobs(o.iroh) : undefined);
    if (!blobs) throw new Error('ImageStore.open: give iroh or blobs');
    const s = new ImageStore(o, blobs);
    await mkdir(o.dir, { recursive: true, mode: 0o700 });
    // Spools and half-written files of a process that died are garbage.
    await removeQuietly(s.tmp);
    for (const f of await readdir(o.dir)) if (f.endsWith('.tmp')) await unlink(path.join(o.dir, f)).catch(() => {});
    const text = await readFile(s.indexFile, 'utf8').catch(() => null);
    if (text !== null) {
      const idx = JSON.parse(text) as IndexFile;
      for (const img of idx.images ?? []) s.images.set(img.hash, img);
    }
    return s;
  }

  private get indexFile(): string {
    return path.join(this.o.dir, 'index.json');
  }

  /** The file a hypervisor reads for an image (whether or not it is written out). */
  fileOf(hash: string): string {
    return path.join(this.o.dir, hexOf(hash));
  }

  /** Calls `fn` whenever an image becomes complete here or is removed; returns an unsubscribe. */
  subscribe(fn: ImageListener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(hash: string, image: StoredImage | null, manifest: PieceManifest | null): void {
    for (const fn of this.listeners) {
      try {
        fn(hash, image, manifest);
      } catch (e) {
        this.o.log?.warn({ err: (e as Error).message }, 'image listener failed');
      }
    }
  }

  get(hash: string): StoredImage | undefined {
    return this.images.get(hash);
  }

  list(): StoredImage[] {
    return [...this.images.values()].sort((a, b) => (a.hash < b.hash ? -1 : 1));
  }

  /** Whether the image is here whole and verified (what a VM may use). Cheap: the index. */
  hasComplete(hash: string): boolean {
    return this.images.get(hash)?.state === 'complete';
  }

  /**
   * Whether the image is here, verified. An image stored whole before pieces existed (a blob
   * uploaded to an older node) is converted to pieces first, so this node serves it to peers.
   */
  async has(hash: string): Promise<boolean> {
    if (this.hasComplete(hash)) return true;
    if (!/^blake3:[0-9a-f]{64}$/.test(hash)) return false;
    return this.convertWhole(hash);
  }

  busy(hash: string): boolean {
    return (this.busyCount.get(hash) ?? 0) > 0;
  }

  /** Marks an image in use by an operation (the cache leaves it alone); call the result to release. */
  hold(hash: string): () => void {
    this.busyCount.set(hash, (this.busyCount.get(hash) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.busyCount.get(hash) ?? 1) - 1;
      if (n <= 0) this.busyCount.delete(hash);
      else this.busyCount.set(hash, n);
    };
  }

  touch(hash: string, at = this.now()): void {
    const img = this.images.get(hash);
    if (!img || img.lastUsed >= at) return;
    img.lastUsed = at;
    this.saveSoon();
  }

  /** The full manifest (piece hashes from the collection root). */
  async manifest(hash: string): Promise<PieceManifest | undefined> {
    const img = this.images.get(hash);
    if (!img) return undefined;
    const l = await this.pieceList(img);
    return { hash: img.hash, size: img.size, pieceSize: img.pieceSize, collection: img.collection, pieces: l.pieces };
  }

  /** Which pieces of a manifest this node holds whole. */
  async localPieces(m: PieceManifest): Promise<Bitmap> {
    const have = Bitmap.empty(m.pieces.length);
    const checks = m.pieces.map((p, i) => async () => {
      if (await this.blobs.isComplete(p)) have.set(i);
    });
    await runLimited(checks, 16);
    return have;
  }

  // ---- import: an upload, a local file ----

  /**
   * Stores a stream as an image: spooled into piece files while its BLAKE3 is computed, imported
   * only if that is `expected` (when given). A mismatch stores nothing (HashMismatchError).
   */
  async importStream(expected: string | null, body: Readable | AsyncIterable<Buffer | Uint8Array>, opts: { pieceSize?: number } = {}): Promise<ImportResult> {
    const pieceSize = opts.pieceSize ?? this.pieceSize;
    checkPieceSize(pieceSize);
    const spool = path.join(this.tmp, `import-${randomBytes(8).toString('hex')}`);
    try {
      const split = await splitIntoPieces(body, spool, pieceSize);
      if (expected !== null && split.hash !== expected) throw new HashMismatchError(expected, split.hash);
      const release = this.hold(split.hash);
      try {
        const have = this.images.get(split.hash);
        if (have?.state === 'complete') {
          this.touch(split.hash);
          return { hash: split.hash, size: have.size, pieces: have.pieceCount, collection: have.collection, existed: true };
        }
        const hex = hexOf(split.hash);
        const pieces = new Array<string>(split.files.length);
        await runLimited(
          split.files.map((f, i) => async () => {
            pieces[i] = await this.blobs.addFile(f, tags.piece(hex, i));
          }),
          4,
        );
        const m: PieceManifest = { hash: split.hash, size: split.size, pieceSize, collection: '', pieces };
        const img = await this.seal(m);
        return { hash: img.hash, size: img.size, pieces: img.pieceCount, collection: img.collection, existed: false };
      } finally {
        release();
      }
    } finally {
      await removeQuietly(spool);
    }
  }

  async importFile(file: string, expected: string | null = null, opts: { pieceSize?: number } = {}): Promise<ImportResult> {
    return this.importStream(expected, createReadStream(file, { highWaterMark: 1 << 20 }), opts);
  }

  // ---- download: a manifest learnt from peers, pieces arriving ----

  /** A download starts (or resumes): remember the image as partial, so its pieces are known and cleaned up. */
  async beginPartial(m: PieceManifest): Promise<void> {
    const problem = manifestProblem(m);
    if (problem) throw new Error(`manifest of ${m.hash}: ${problem}`);
    const cur = this.images.get(m.hash);
    if (cur?.state === 'complete') return;
    const now = this.now();
    this.images.set(m.hash, { hash: m.hash, size: m.size, pieceSize: m.pieceSize, pieceCount: m.pieces.length, collection: m.collection, state: 'partial', addedAt: cur?.addedAt ?? now, lastUsed: now });
    this.lists.delete(m.hash);
    await this.save();
  }

  /** The partial download of an image, if one was started here. */
  partial(hash: string): StoredImage | undefined {
    const img = this.images.get(hash);
    return img?.state === 'partial' ? img : undefined;
  }

  /** Every piece is here and the whole file checked: make it a complete image (collection, index). */
  async completePartial(m: PieceManifest): Promise<StoredImage> {
    return this.seal(m);
  }

  /** A verifier for a manifest; `out` also writes the whole file (see installFile). */
  verifier(m: PieceManifest, out: string | null): PieceVerifier {
    return new PieceVerifier(this.blobs, m, this.tmp, out);
  }

  /** A private path to write an image's file to before installFile. */
  tmpFileFor(hash: string): string {
    return path.join(this.tmp, `${hexOf(hash)}.${randomBytes(6).toString('hex')}.file`);
  }

  /** Moves a checked file into place for hypervisors (read-only). */
  async installFile(hash: string, tmp: string): Promise<string> {
    const file = this.fileOf(hash);
    await chmod(tmp, 0o555); // executables must stay runnable; nothing may write it
    await rename(tmp, file);
    return file;
  }

  // ---- files for hypervisors ----

  /** The local path of an image's whole file, writing it out from the pieces (and checking it) if needed. */
  pathFor(hash: string): Promise<string> {
    let p = this.writing.get(hash);
    if (!p) {
      p = this.writeOut(hash).finally(() => this.writing.delete(hash));
      this.writing.set(hash, p);
    }
    return p;
  }

  async fileBytes(hash: string): Promise<number> {
    try {
      return (await stat(this.fileOf(hash))).size;
    } catch {
      return 0;
    }
  }

  async dropFile(hash: string): Promise<void> {
    if (this.writing.has(hash)) return;
    await unlink(this.fileOf(hash)).catch(() => {});
  }

  private async writeOut(hash: string): Promise<string> {
    const file = this.fileOf(hash);
    // A file is only ever moved into place after its check (or exported from a verified whole
    // blob by an older node), and removed with its image: one that is there is good.
    if (this.images.get(hash)?.state !== 'partial') {
      try {
        await stat(file);
        this.touch(hash);
        return file;
      } catch {
        // not written out yet
      }
    }
    if (!(await this.has(hash))) throw new NotInStoreError(hash);
    const release = this.hold(hash);
    try {
      const m = (await this.manifest(hash))!;
      await mkdir(this.tmp, { recursive: true, mode: 0o700 });
      const tmp = this.tmpFileFor(hash);
      const v = this.verifier(m, tmp);
      for (let i = 0; i < m.pieces.length; i++) v.ready(i);
      let got: { hash: string; size: number };
      try {
        got = await v.finish();
      } catch (e) {
        await v.abort();
        await unlink(tmp).catch(() => {});
        throw e;
      }
      if (got.hash !== hash) {
        // The pieces here do not make the image (damaged store): drop them; it is fetched again.
        await unlink(tmp).catch(() => {});
        await this.remove(hash, { force: true });
        throw new HashMismatchError(hash, got.hash);
      }
      const out = await this.installFile(hash, tmp);
      this.touch(hash);
      return out;
    } finally {
      release();
    }
  }

  // ---- removal ----

  /**
   * Removes an image: its file, its collection, and its pieces no other image here shares. Refuses
   * an image in use by an operation unless forced (a failed check removing what it fetched).
   */
  async remove(hash: string, opts: { force?: boolean } = {}): Promise<boolean> {
    const img = this.images.get(hash);
    if (!img) {
      await unlink(this.fileOf(hash)).catch(() => {});
      return false;
    }
    if (!opts.force && this.busy(hash)) return false;
    const list = await this.pieceList(img).catch(() => null);
    this.images.delete(hash);
    this.lists.delete(hash);
    await this.save();
    this.emit(hash, null, null);
    await unlink(this.fileOf(hash)).catch(() => {});
    const kept = new Set<string>();
    for (const other of this.images.values()) {
      const l = await this.pieceList(other).catch(() => null);
      if (!l) continue;
      kept.add(l.meta);
      for (const p of l.pieces) kept.add(p);
    }
    const del = async (hex: string) => {
      await this.blobs.delete(hex).catch((e: unknown) => this.o.log?.warn({ blob: hex, err: (e as Error).message }, 'cannot delete blob'));
    };
    await del(img.collection);
    if (list) {
      if (!kept.has(list.meta)) await del(list.meta);
      for (const p of new Set(list.pieces)) if (!kept.has(p)) await del(p);
    }
    return true;
  }

  /** Writes the index now (and waits for it). */
  async flush(): Promise<void> {
    clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    await this.save();
  }

  // ---- internals ----

  private async pieceList(img: StoredImage): Promise<{ meta: string; pieces: string[] }> {
    const cached = this.lists.get(img.hash);
    if (cached) return cached;
    const children = parseHashSeq(await this.blobs.read(img.collection));
    // A collection's first child names its pieces; a downloaded root lists the same.
    const [meta, ...pieces] = children;
    if (meta === undefined || pieces.length !== img.pieceCount) throw new Error(`collection ${img.collection} of ${img.hash} lists ${children.length - 1} pieces, expected ${img.pieceCount}`);
    const l = { meta, pieces };
    this.lists.set(img.hash, l);
    return l;
  }

  /** Makes the pieces of a manifest a complete image: collection (tagged), names blob (tagged), index. */
  private async seal(m: PieceManifest): Promise<StoredImage> {
    const hex = hexOf(m.hash);
    const root = await this.blobs.createCollection(
      m.pieces.map((p, i) => ({ name: pieceName(i), hex: p })),
      tags.image(hex),
    );
    const [meta] = parseHashSeq(await this.blobs.read(root));
    // The names blob has no tag of its own: give it one, so it can be deleted with the image.
    if (meta) await this.blobs.addBytes(await this.blobs.read(meta), tags.meta(hex));
    if (m.collection && m.collection !== root) this.o.log?.warn({ image: m.hash, advertised: m.collection, built: root }, 'the collection built here differs from the one advertised (another piece naming?); serving ours');
    const cur = this.images.get(m.hash);
    const now = this.now();
    const img: StoredImage = { hash: m.hash, size: m.size, pieceSize: m.pieceSize, pieceCount: pieceCount(m.size, m.pieceSize), collection: root, state: 'complete', addedAt: cur?.addedAt ?? now, lastUsed: now };
    this.images.set(m.hash, img);
    this.lists.set(m.hash, { meta: meta ?? '', pieces: m.pieces });
    await this.save();
    this.emit(m.hash, img, { ...m, collection: root });
    return img;
  }

  private convertWhole(hash: string): Promise<boolean> {
    let p = this.converting.get(hash);
    if (!p) {
      p = (async () => {
        const hex = hexOf(hash);
        if (!(await this.blobs.isComplete(hex).catch(() => false))) return false;
        await mkdir(this.tmp, { recursive: true, mode: 0o700 });
        const tmp = path.join(this.tmp, `whole-${hex}.${randomBytes(4).toString('hex')}`);
        try {
          await this.blobs.exportTo(hex, tmp);
          await this.importFile(tmp, hash);
        } finally {
          await unlink(tmp).catch(() => {});
        }
        await this.blobs.delete(hex).catch(() => {});
        this.o.log?.info?.({ image: hash }, 'converted an image stored whole into pieces');
        return true;
      })()
        .catch((e: unknown) => {
          this.o.log?.warn({ image: hash, err: (e as Error).message }, 'cannot convert a whole blob into pieces');
          return false;
        })
        .finally(() => this.converting.delete(hash));
      this.converting.set(hash, p);
    }
    return p;
  }

  private saveSoon(): void {
    if (this.saveTimer) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      void this.save().catch((e: unknown) => this.o.log?.warn({ err: (e as Error).message }, 'cannot write the image index'));
    }, 2_000);
    this.saveTimer.unref();
  }

  /** Writes the index (durably: temp file, fsync, rename), one write at a time, the latest state. */
  private save(): Promise<void> {
    this.saving = this.saving
      .catch(() => {})
      .then(async () => {
        const body: IndexFile = { version: 1, images: this.list() };
        await writeFileAtomic(this.indexFile, JSON.stringify(body), { mode: 0o600, sync: 'data' });
      });
    return this.saving;
  }
}

/** Runs tasks with at most `n` at once; rejects with the first error (after all settle). */
export async function runLimited(tasks: (() => Promise<void>)[], n: number): Promise<void> {
  let next = 0;
  let failed: unknown;
  await Promise.all(
    Array.from({ length: Math.min(n, tasks.length) }, async () => {
      while (next < tasks.length && failed === undefined) {
        const t = tasks[next++]!;
        try {
          await t();
        } catch (e) {
          failed ??= e;
        }
      }
    }),
  );
  if (failed !== undefined) throw failed;
}
