import { mkdir, open, readdir, readFile, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { createCRC32, type IHasher } from 'hash-wasm';
import { fsyncDir } from '../storage/index.js';

// A write-ahead log of opaque records in numbered segment files, in the style of etcd's wal
// package. A record is acknowledged only once it is on disk (written and fsynced); appends that
// arrive while a write+fsync is running are batched into the next single write and fsync.
//
// Record framing: [payload length u32 LE][CRC32C(payload) u32 LE][CRC32C(first 8 bytes) u32 LE]
// then the payload. The header has its own checksum so that a corrupt length is never trusted.

const HEADER_BYTES = 12;
const MAX_RECORD_BYTES = 0xffff_ffff;
const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;
const SEGMENT_NAME = /^(\d{16})\.wal$/;
const CRC32C_POLYNOMIAL = 0x82f63b78;

export interface WalOptions {
  /** A segment at or above this size is closed before the next batch is written. Default 64 MiB. */
  segmentBytes?: number;
  /**
   * Records written first in every segment started by a rotation (e.g. a Raft hard state), so that
   * deleting older segments never deletes the only copy of that state. Not called for segment 1.
   */
  onRotate?: () => Uint8Array[];
  /** Torn tails that were truncated on open are reported here. */
  onWarning?: (msg: string) => void;
  /** A mistake for the fault tests to catch: a torn tail is left in place and written after. */
  keepTornTail?: boolean;
  /**
   * The disk is full (ENOSPC, EDQUOT): the batch is cut off the file and kept, nothing waiting
   * fails, and it is written again every `fullRetryMs` (default 1 s) until space returns.
   */
  onFull?: (error: Error) => void;
  /** Space came back: what waited is written. */
  onSpace?: (fullForMs: number) => void;
  fullRetryMs?: number;
  /** A mistake for the fault tests to catch: a full disk kills the WAL, as any failed write does. */
  dieWhenFull?: boolean;
}

type Hooks = Pick<WalOptions, 'onRotate' | 'onFull' | 'onSpace' | 'fullRetryMs' | 'dieWhenFull'>;

function isNoSpace(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

export interface WalRecord {
  /** Sequence number of the segment the record was read from. */
  seq: number;
  data: Uint8Array;
}

/**
 * Work done since open, so callers (and tests) can see how well batching works. `fsyncs` counts
 * every sync: one per batch, plus the segment and directory syncs of each rotation.
 */
export interface WalStats {
  writes: number;
  fsyncs: number;
  records: number;
  bytes: number;
}

/** The log cannot be read without losing acknowledged data; a human has to look at it. */
export class WalCorruptionError extends Error {
  constructor(
    readonly file: string,
    readonly offset: number,
    message: string,
  ) {
    super(message);
    this.name = 'WalCorruptionError';
  }
}

// Shared low-level helpers (also used by snapshot.ts).

let hasher: Promise<IHasher> | undefined;

/** Returns a synchronous CRC32C (Castagnoli); the WASM module is instantiated once per process. */
export async function loadCrc32c(): Promise<(data: Uint8Array) => number> {
  hasher ??= createCRC32(CRC32C_POLYNOMIAL).catch((err: unknown) => {
    hasher = undefined;
    throw err;
  });
  const h = await hasher;
  return (data) => {
    const d = h.init().update(data).digest('binary');
    return ((d[0]! << 24) | (d[1]! << 16) | (d[2]! << 8) | d[3]!) >>> 0;
  };
}

/** mkdir -p, fsyncing the parent of every directory it had to create so that they survive a crash. */
export async function ensureDir(dir: string): Promise<void> {
  const first = await mkdir(dir, { recursive: true });
  if (first === undefined) return;
  const top = resolve(first);
  for (let d = resolve(dir); ; d = dirname(d)) {
    await fsyncDir(dirname(d));
    if (d === top || d === dirname(d)) break;
  }
}

function segmentName(seq: number): string {
  return `${String(seq).padStart(16, '0')}.wal`;
}

async function listSegments(dir: string): Promise<number[]> {
  const seqs: number[] = [];
  for (const name of await readdir(dir)) {
    const m = SEGMENT_NAME.exec(name);
    if (m) seqs.push(Number(m[1]));
  }
  return seqs.sort((a, b) => a - b);
}

function isAllZero(buf: Uint8Array, from: number): boolean {
  for (let i = from; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

interface ScanResult {
  records: Uint8Array[];
  /** Length of the prefix made of intact records. */
  validBytes: number;
  /** Set when the last segment ends in a torn write that should be cut off. */
  torn?: { offset: number; problem: string };
}

/**
 * Parses one segment. Only the last segment may end in a torn write (the crash interrupted the
 * last batch, which was never acknowledged); any other damage means acknowledged records would be
 * lost by skipping it, so it is refused.
 */
function scanSegment(buf: Buffer, file: string, isLast: boolean, crc: (d: Uint8Array) => number): ScanResult {
  const records: Uint8Array[] = [];
  let off = 0;
  const badRecord = (problem: string, looksTorn: boolean): ScanResult => {
    if (isLast && looksTorn) return { records, validBytes: off, torn: { offset: off, problem } };
    const where = isLast ? '' : ' (not the last segment)';
    throw new WalCorruptionError(
      file,
      off,
      `refusing to start: WAL record at ${file} offset ${off}${where} ${problem}; data after it would be lost`,
    );
  };
  while (off < buf.length) {
    if (buf.length - off < HEADER_BYTES) return badRecord('has an incomplete header', true);
    const length = buf.readUInt32LE(off);
    const payloadCrc = buf.readUInt32LE(off + 4);
    if (crc(buf.subarray(off, off + 8)) !== buf.readUInt32LE(off + 8)) {
      return badRecord('has a bad header checksum', isAllZero(buf, off));
    }
    const end = off + HEADER_BYTES + length;
    if (end > buf.length) return badRecord('extends past the end of the file', true);
    const payload = buf.subarray(off + HEADER_BYTES, end);
    if (crc(payload) !== payloadCrc) {
      return badRecord('has a bad checksum', end === buf.length || isAllZero(buf, off));
    }
    // Copy so that a record kept by the caller does not pin the whole segment buffer.
    records.push(Buffer.from(payload));
    off = end;
  }
  return { records, validBytes: off };
}

type AppendOp = {
  kind: 'append';
  frames: Buffer[];
  sync: boolean;
  resolve: (r: { seq: number }) => void;
  reject: (err: unknown) => void;
};
type RotateOp = { kind: 'rotate'; resolve: (seq: number) => void; reject: (err: unknown) => void };
type Op = AppendOp | RotateOp;

export class Wal {
  readonly stats: WalStats = { writes: 0, fsyncs: 0, records: 0, bytes: 0 };

  private fh: FileHandle | undefined;
  private seq: number;
  private size: number;
  private queue: Op[] = [];
  private draining: Promise<void> | undefined;
  private failure: { error: unknown } | undefined;
  private closing: Promise<void> | undefined;
  private fullSince: number | undefined;
  private wakeFromFull: (() => void) | undefined;

  private constructor(
    private readonly dir: string,
    fh: FileHandle,
    seq: number,
    size: number,
    private readonly crc: (d: Uint8Array) => number,
    private readonly segmentBytes: number,
    private readonly hooks: Hooks,
  ) {
    this.fh = fh;
    this.seq = seq;
    this.size = size;
  }

  /**
   * Opens (creating if needed) the WAL in `dir` and returns every intact record in order. A torn
   * tail of the last segment is truncated; anything else damaged throws WalCorruptionError.
   */
  static async open(dir: string, opts: WalOptions = {}): Promise<{ wal: Wal; records: WalRecord[] }> {
    const segmentBytes = opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    if (!(segmentBytes > 0)) throw new RangeError(`segmentBytes must be positive, got ${segmentBytes}`);
    const crc = await loadCrc32c();
    await ensureDir(dir);

    const seqs = await listSegments(dir);
    for (let i = 1; i < seqs.length; i++) {
      const expected = seqs[i - 1]! + 1;
      if (seqs[i] !== expected) {
        const file = join(dir, segmentName(expected));
        throw new WalCorruptionError(
          file,
          0,
          `refusing to start: WAL segment ${file} is missing (found ${segmentName(seqs[i - 1]!)} then ${segmentName(seqs[i]!)}); records in it would be lost`,
        );
      }
    }

    const records: WalRecord[] = [];
    let tail: { validBytes: number } | undefined;
    for (const [i, seq] of seqs.entries()) {
      const file = join(dir, segmentName(seq));
      const isLast = i === seqs.length - 1;
      const buf = await readFile(file);
      const scan = scanSegment(buf, file, isLast, crc);
      for (const data of scan.records) records.push({ seq, data });
      if (isLast) tail = { validBytes: scan.validBytes };
      if (scan.torn) {
        opts.onWarning?.(
          `WAL ${file}: record at offset ${scan.torn.offset} ${scan.torn.problem}; ` +
            `truncating ${buf.length - scan.validBytes} bytes of an interrupted (never acknowledged) write`,
        );
      }
    }

    const lastSeq = seqs.at(-1);
    if (lastSeq === undefined || tail === undefined) {
      const fh = await open(join(dir, segmentName(1)), 'wx');
      try {
        await fsyncDir(dir);
      } catch (err) {
        await fh.close();
        throw err;
      }
      return { wal: new Wal(dir, fh, 1, 0, crc, segmentBytes, opts), records };
    }
    const fh = await open(join(dir, segmentName(lastSeq)), 'r+');
    try {
      const { size } = await fh.stat();
      if (opts.keepTornTail) return { wal: new Wal(dir, fh, lastSeq, size, crc, segmentBytes, opts), records };
      if (size !== tail.validBytes) {
        await fh.truncate(tail.validBytes);
        await fh.sync();
      }
    } catch (err) {
      await fh.close();
      throw err;
    }
    return { wal: new Wal(dir, fh, lastSeq, tail.validBytes, crc, segmentBytes, opts), records };
  }

  /** Sequence number of the segment new records go to. */
  get currentSeq(): number {
    return this.seq;
  }

  /** Since when (ms since the epoch) appends wait for disk space, or undefined. */
  get fullSinceMs(): number | undefined {
    return this.fullSince;
  }

  /** Resolves once `data` is written and fsynced, with the segment it landed in. */
  append(data: Uint8Array): Promise<{ seq: number }> {
    return this.appendMany([data]);
  }

  /**
   * Appends all records in one batch (one write, one fsync, same segment). With `sync: false`
   * the write is not fsynced on its own account (it rides along with the next fsync): for state
   * that may be lost in a crash without harm, like a Raft commit index (etcd's MustSync false).
   */
  appendMany(records: Uint8Array[], opts: { sync?: boolean } = {}): Promise<{ seq: number }> {
    const unusable = this.unusable();
    if (unusable !== undefined) return Promise.reject(unusable);
    let frames: Buffer[];
    try {
      frames = records.map((r) => this.frame(r));
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => this.enqueue({ kind: 'append', frames, sync: opts.sync ?? true, resolve, reject }));
  }

  /**
   * Closes the current segment and starts the next one, after every append issued before this
   * call; appends issued after it land in the new segment. Resolves with the new segment's seq.
   */
  rotate(): Promise<number> {
    const unusable = this.unusable();
    if (unusable !== undefined) return Promise.reject(unusable);
    return new Promise((resolve, reject) => this.enqueue({ kind: 'rotate', resolve, reject }));
  }

  /** Deletes segments older than `seq` (their records are covered by a snapshot). */
  async removeSegmentsBelow(seq: number): Promise<void> {
    if (seq > this.seq) {
      throw new RangeError(`cannot remove segments below ${seq}: the current segment is ${this.seq}`);
    }
    for (const old of await listSegments(this.dir)) {
      if (old >= seq) break;
      try {
        await unlink(join(this.dir, segmentName(old)));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      // One at a time, oldest first, each made durable: a crash must never leave a hole in the
      // sequence, which open() would rightly treat as lost data.
      await fsyncDir(this.dir);
    }
  }

  /** Waits for queued appends and rotations, then closes the segment file. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.wakeFromFull?.();
      while (this.draining) await this.draining;
      const fh = this.fh;
      this.fh = undefined;
      await fh?.close();
    })();
    return this.closing;
  }

  private unusable(): unknown {
    if (this.failure) return this.failure.error;
    if (this.closing) return new Error('WAL is closed');
    return undefined;
  }

  private frame(data: Uint8Array): Buffer {
    if (data.length > MAX_RECORD_BYTES) throw new RangeError(`WAL record too large: ${data.length} bytes`);
    const f = Buffer.allocUnsafe(HEADER_BYTES + data.length);
    f.writeUInt32LE(data.length, 0);
    f.writeUInt32LE(this.crc(data), 4);
    f.writeUInt32LE(this.crc(f.subarray(0, 8)), 8);
    f.set(data, HEADER_BYTES);
    return f;
  }

  private enqueue(op: Op): void {
    this.queue.push(op);
    this.draining ??= this.drain();
  }

  private async drain(): Promise<void> {
    // Yield once so that appends issued in the same tick join the first batch.
    await Promise.resolve();
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      if (head.kind === 'rotate') {
        this.queue.shift();
        try {
          head.resolve(await this.startNextSegment());
        } catch (err) {
          this.fail(err, [head]);
        }
        continue;
      }
      // Everything queued up to the next rotation goes in one write and one fsync.
      let n = 1;
      while (n < this.queue.length && this.queue[n]!.kind === 'append') n++;
      const batch = this.queue.splice(0, n) as AppendOp[];
      try {
        if (this.size >= this.segmentBytes) await this.startNextSegment();
      } catch (err) {
        this.fail(err, batch);
        continue;
      }
      try {
        await this.writeDurably(batch.flatMap((op) => op.frames), batch.some((op) => op.sync));
      } catch (err) {
        if (!isNoSpace(err) || this.hooks.dieWhenFull || this.closing) {
          this.fail(err, batch);
          continue;
        }
        // Nothing of this batch was acknowledged: cut what reached the file off, and write it
        // again (from memory, so whatever the kernel kept of it does not matter) once there is room.
        try {
          await this.fh?.truncate(this.size);
        } catch (cut) {
          this.fail(cut, batch);
          continue;
        }
        if (this.fullSince === undefined) {
          this.fullSince = Date.now();
          this.hooks.onFull?.(err as Error);
        }
        this.queue.unshift(...batch);
        await new Promise<void>((r) => {
          const t = setTimeout(r, this.hooks.fullRetryMs ?? 1000);
          this.wakeFromFull = () => (clearTimeout(t), r());
        });
        this.wakeFromFull = undefined;
        continue;
      }
      if (this.fullSince !== undefined) {
        const ms = Date.now() - this.fullSince;
        this.fullSince = undefined;
        this.hooks.onSpace?.(ms);
      }
      for (const op of batch) op.resolve({ seq: this.seq });
    }
    this.draining = undefined;
  }

  /**
   * After a failed write or fsync the file's state is unknown (the kernel may have dropped the
   * dirty pages), so, like etcd, we never retry: everything waiting fails and the WAL stays dead.
   * A full disk is the exception (see drain): that batch is cut off and written whole again.
   */
  private fail(error: unknown, inFlight: Op[]): void {
    this.failure ??= { error };
    const waiting = [...inFlight, ...this.queue];
    this.queue = [];
    for (const op of waiting) op.reject(this.failure.error);
  }

  private async writeDurably(frames: Buffer[], sync = true): Promise<void> {
    const fh = this.fh;
    if (!fh) throw new Error('WAL is closed');
    if (frames.length === 0) return;
    const buf = frames.length === 1 ? frames[0]! : Buffer.concat(frames);
    let done = 0;
    while (done < buf.length) {
      const { bytesWritten } = await fh.write(buf, done, buf.length - done, this.size + done);
      this.stats.writes++;
      done += bytesWritten;
    }
    // fdatasync also persists the file size, which is all the metadata a reader needs.
    if (sync) {
      await fh.datasync();
      this.stats.fsyncs++;
    }
    this.size += buf.length;
    this.stats.records += frames.length;
    this.stats.bytes += buf.length;
  }

  private async startNextSegment(): Promise<number> {
    const old = this.fh;
    if (!old) throw new Error('WAL is closed');
    await old.sync();
    this.stats.fsyncs++;
    this.fh = undefined;
    await old.close();

    const next = this.seq + 1;
    const fh = await open(join(this.dir, segmentName(next)), 'wx');
    this.fh = fh;
    this.seq = next;
    this.size = 0;
    await fsyncDir(this.dir);
    this.stats.fsyncs++;
    const carried = this.hooks.onRotate?.() ?? [];
    if (carried.length > 0) await this.writeDurably(carried.map((r) => this.frame(r)));
    return next;
  }
}
