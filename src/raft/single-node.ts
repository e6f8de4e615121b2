import { join } from 'node:path';
import { readLatestSnapshot, writeSnapshot } from './snapshot.js';
import { Wal, type WalRecord, type WalStats } from './wal.js';

// A replicated log with one voter: a degenerate Raft (term 1, the node is always leader and its
// own quorum), so that the real Raft node can later take its place behind the same shape. An
// entry is committed once it is fsynced to the local WAL, and applied in index order after that.

/**
 * The replicated state. `apply` must be deterministic and synchronous: it runs again, with the
 * same inputs, every time the log is replayed on open.
 *
 * `apply` should not throw: turn a bad command into a result value instead. If it does throw, the
 * proposal rejects with that error but the entry stays in the log and counts as applied (the index
 * is consumed, and the same throw happens again on every replay); any change the state machine
 * made before throwing is kept.
 */
export interface StateMachine {
  apply(data: Uint8Array, index: number): unknown;
  /** Serialise the whole state, as of the last applied index. */
  snapshot(): Uint8Array;
  /** Replace the whole state with a snapshot taken at `index`. */
  restore(data: Uint8Array, index: number): void;
}

export interface SingleNodeOptions {
  /** Take a snapshot (and compact the WAL) after this many applied entries. Default 10 000. */
  snapshotEvery?: number;
  /** WAL segment size; see WalOptions. */
  segmentBytes?: number;
  /** Recoverable problems found on open (torn WAL tail, damaged snapshot) and failed background snapshots. */
  onWarning?: (msg: string) => void;
}

const TERM = 1;
const ENTRY_HEADER_BYTES = 16; // term u64 LE, index u64 LE

interface Entry {
  term: number;
  index: number;
  data: Uint8Array;
}

interface Pending {
  data: Uint8Array;
  resolve: (r: { index: number; result: unknown }) => void;
  reject: (err: unknown) => void;
}

function encodeEntry(term: number, index: number, data: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(ENTRY_HEADER_BYTES + data.length);
  b.writeBigUInt64LE(BigInt(term), 0);
  b.writeBigUInt64LE(BigInt(index), 8);
  b.set(data, ENTRY_HEADER_BYTES);
  return b;
}

function decodeEntry(rec: WalRecord): Entry {
  const b = Buffer.from(rec.data.buffer, rec.data.byteOffset, rec.data.byteLength);
  if (b.length < ENTRY_HEADER_BYTES) {
    throw new Error(`refusing to start: WAL record in segment ${rec.seq} is ${b.length} bytes, too short for a log entry`);
  }
  const term = b.readBigUInt64LE(0);
  const index = b.readBigUInt64LE(8);
  if (term > BigInt(Number.MAX_SAFE_INTEGER) || index > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new Error(`refusing to start: WAL entry in segment ${rec.seq} has term ${term} index ${index}, out of range`);
  }
  return { term: Number(term), index: Number(index), data: b.subarray(ENTRY_HEADER_BYTES) };
}

/**
 * Rebuilds the log after the snapshot from the WAL, as Raft would: an entry whose index is at or
 * below the last one seen replaces the suffix from that index. Also records, per segment, the
 * highest index written to it. A gap means acknowledged entries are missing, so it is fatal.
 */
function entriesAfter(records: WalRecord[], snapIndex: number, highBySeq: Map<number, number>): Entry[] {
  const log: Entry[] = [];
  for (const rec of records) {
    const e = decodeEntry(rec);
    highBySeq.set(rec.seq, Math.max(highBySeq.get(rec.seq) ?? 0, e.index));
    if (e.index <= snapIndex) continue; // already in the snapshot
    const prev = log.at(-1)?.index ?? snapIndex;
    if (e.index > prev + 1) {
      const after = log.length > 0 ? `entry ${prev}` : `the snapshot (index ${snapIndex})`;
      throw new Error(
        `refusing to start: WAL entry ${e.index} (segment ${rec.seq}) follows ${after}; entries ${prev + 1}..${e.index - 1} are missing`,
      );
    }
    log.length = e.index - snapIndex - 1; // no-op unless this entry rewrites the suffix
    log.push(e);
  }
  return log;
}

export class SingleNodeLog {
  private currentTerm: number;
  private commit: number;
  private applied: number;
  private last: number;
  private snapIndex: number;
  /** Proposals not yet applied; inflight[0] has index applied + 1. */
  private readonly inflight: Pending[] = [];
  /** Per WAL segment seq, the highest entry index written to it. */
  private readonly highBySeq: Map<number, number>;
  private failure: { error: unknown } | undefined;
  private closing: Promise<void> | undefined;
  private snapshots: Promise<void> = Promise.resolve();
  private autoSnapshotQueued = false;

  private constructor(
    private readonly wal: Wal,
    private readonly sm: StateMachine,
    private readonly snapDir: string,
    private readonly snapshotEvery: number,
    private readonly warn: (msg: string) => void,
    highBySeq: Map<number, number>,
    state: { term: number; index: number; snapIndex: number },
  ) {
    this.highBySeq = highBySeq;
    this.currentTerm = state.term;
    this.commit = this.applied = this.last = state.index;
    this.snapIndex = state.snapIndex;
  }

  /** Restores the latest snapshot into `sm`, replays the WAL after it, and returns the ready log. */
  static async open(dir: string, sm: StateMachine, opts: SingleNodeOptions = {}): Promise<SingleNodeLog> {
    const snapshotEvery = opts.snapshotEvery ?? 10_000;
    if (!Number.isSafeInteger(snapshotEvery) || snapshotEvery < 1) {
      throw new RangeError(`snapshotEvery must be a positive integer, got ${snapshotEvery}`);
    }
    const warn = opts.onWarning ?? (() => undefined);
    const snapDir = join(dir, 'snap');
    const snap = await readLatestSnapshot(snapDir, warn);
    const snapIndex = snap?.meta.index ?? 0;
    if (snap) sm.restore(snap.data, snapIndex);

    const { wal, records } = await Wal.open(join(dir, 'wal'), { segmentBytes: opts.segmentBytes, onWarning: warn });
    try {
      const highBySeq = new Map<number, number>();
      const entries = entriesAfter(records, snapIndex, highBySeq);
      for (const e of entries) {
        try {
          sm.apply(e.data, e.index);
        } catch {
          // The proposer of this entry already got this error when it was first applied.
        }
      }
      const last = entries.at(-1);
      return new SingleNodeLog(wal, sm, snapDir, snapshotEvery, warn, highBySeq, {
        term: Math.max(TERM, snap?.meta.term ?? 0, last?.term ?? 0),
        index: last?.index ?? snapIndex,
        snapIndex,
      });
    } catch (err) {
      await wal.close();
      throw err;
    }
  }

  get term(): number {
    return this.currentTerm;
  }
  get commitIndex(): number {
    return this.commit;
  }
  get appliedIndex(): number {
    return this.applied;
  }
  get lastIndex(): number {
    return this.last;
  }
  /** WAL counters; `fsyncs` well below the number of proposals shows group commit at work. */
  get walStats(): Readonly<WalStats> {
    return this.wal.stats;
  }

  /**
   * Appends `data` as the next entry (indices are assigned in call order) and resolves with the
   * state machine's result once the entry is durable and applied.
   */
  propose(data: Uint8Array): Promise<{ index: number; result: unknown }> {
    if (this.failure) return Promise.reject(this.failure.error);
    if (this.closing) return Promise.reject(new Error('log is closed'));
    const index = ++this.last;
    const entry = encodeEntry(this.currentTerm, index, data);
    return new Promise((resolve, reject) => {
      // Apply from our own copy: the caller may reuse its buffer once propose returns.
      this.inflight.push({ data: entry.subarray(ENTRY_HEADER_BYTES), resolve, reject });
      this.wal.append(entry).then(
        ({ seq }) => this.onDurable(index, seq),
        (err: unknown) => this.fail(err),
      );
    });
  }

  /** Snapshots the applied state now and compacts the WAL (queued behind any running snapshot). */
  snapshotNow(): Promise<void> {
    if (this.closing) return Promise.reject(new Error('log is closed'));
    return this.queueSnapshot();
  }

  /** Stops accepting proposals, lets in-flight ones finish (they still resolve), and closes the WAL. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.snapshots;
      await this.wal.close();
    })();
    return this.closing;
  }

  private onDurable(index: number, seq: number): void {
    // Recorded here, synchronously on the WAL's acknowledgement, so it is known before any later
    // rotate() resolves; compaction relies on that.
    this.highBySeq.set(seq, Math.max(this.highBySeq.get(seq) ?? 0, index));
    if (this.failure) return;
    // The WAL acknowledges in append order, so everything up to `index` is durable.
    this.commit = Math.max(this.commit, index);
    while (this.applied < this.commit) {
      const p = this.inflight.shift()!;
      const i = ++this.applied;
      try {
        p.resolve({ index: i, result: this.sm.apply(p.data, i) });
      } catch (err) {
        p.reject(err);
      }
    }
    this.maybeSnapshot();
  }

  private fail(error: unknown): void {
    if (this.failure) return;
    this.failure = { error };
    for (const p of this.inflight.splice(0)) p.reject(error);
  }

  private maybeSnapshot(): void {
    if (this.autoSnapshotQueued || this.closing || this.failure) return;
    if (this.applied - this.snapIndex < this.snapshotEvery) return;
    this.autoSnapshotQueued = true;
    this.queueSnapshot()
      .catch((err: unknown) => this.warn(`background snapshot failed (the WAL still has every entry): ${String(err)}`))
      .finally(() => {
        this.autoSnapshotQueued = false;
        this.maybeSnapshot();
      });
  }

  private queueSnapshot(): Promise<void> {
    const run = this.snapshots.then(() => this.takeSnapshot());
    this.snapshots = run.catch(() => undefined);
    return run;
  }

  private async takeSnapshot(): Promise<void> {
    if (this.failure) throw this.failure.error;
    const index = this.applied;
    if (index <= this.snapIndex) return;
    // Taken synchronously, so it is exactly the state at `index` even while proposals continue.
    const data = this.sm.snapshot();
    await writeSnapshot(this.snapDir, { index, term: this.currentTerm }, data);
    const previous = this.snapIndex;
    this.snapIndex = index;
    // Start a fresh segment so that the one holding `index` can be dropped by a later compaction.
    const seq = await this.wal.rotate();
    await this.compactWal(previous, seq);
  }

  /**
   * Deletes the oldest segments whose entries are all at or below `coveredIndex`, stopping at the
   * first one that holds anything newer. `coveredIndex` is the older of the two snapshots kept on
   * disk, so if the newest snapshot turns out damaged, the WAL still reaches back to the older one.
   * Segments below `belowSeq` were sealed before the rotation resolved, so their highest indices
   * are all known.
   */
  private async compactWal(coveredIndex: number, belowSeq: number): Promise<void> {
    let cut = belowSeq;
    for (const seq of [...this.highBySeq.keys()].sort((a, b) => a - b)) {
      if (seq >= belowSeq) break;
      if (this.highBySeq.get(seq)! > coveredIndex) {
        cut = seq;
        break;
      }
    }
    await this.wal.removeSegmentsBelow(cut);
    for (const seq of this.highBySeq.keys()) if (seq < cut) this.highBySeq.delete(seq);
  }
}
