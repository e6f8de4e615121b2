import { entrySize, type ConfState, type Entry, type HardState, type Snapshot } from './types.js';

// The core's read-only view of what the driver has persisted, after etcd's Storage interface.
// The core never writes to it: the driver appends a Ready's entries (after making them durable)
// and the core learns of it through RawNode.advance().

export type StorageErrorKind = 'compacted' | 'unavailable' | 'snapshot-out-of-date';

export class StorageError extends Error {
  constructor(
    readonly kind: StorageErrorKind,
    message: string,
  ) {
    super(message);
    this.name = 'StorageError';
  }
}

export interface Storage {
  /** The persisted HardState, and the configuration of the latest snapshot. */
  initialState(): { hardState: HardState; confState: ConfState };
  /**
   * Entries [lo, hi), at most `maxSize` bytes (but at least one entry). Throws StorageError
   * 'compacted' below firstIndex() and 'unavailable' above lastIndex().
   */
  entries(lo: number, hi: number, maxSize: number): Entry[];
  /** The term of entry i, for firstIndex()-1 <= i <= lastIndex() (the former from the snapshot). */
  term(i: number): number;
  /** The first index still in the log: the snapshot's index + 1. */
  firstIndex(): number;
  lastIndex(): number;
  /** The latest snapshot (index 0 and empty data when there is none). */
  snapshot(): Snapshot;
}

const EMPTY_CONF: ConfState = { voters: [], learners: [] };

/**
 * Storage kept in memory: the simulator's "disk", and the real node's in-memory index over its
 * WAL. As in etcd, the snapshot and the compaction point are separate: createSnapshot() records a
 * snapshot, compact() later drops entries up to some index at or below it, so that slightly
 * lagging followers can still catch up from the log instead of a snapshot.
 */
export class MemoryStorage implements Storage {
  private hardState: HardState = { term: 0, vote: null, commit: 0 };
  private snap: Snapshot = { meta: { index: 0, term: 0, conf: EMPTY_CONF }, data: new Uint8Array(0) };
  /** The compaction point: the index and term of the entry just before ents[0]. */
  private base = 0;
  private baseTerm = 0;
  private ents: Entry[] = [];

  /**
   * Writes the state a brand new cluster starts from: a snapshot at index 1, term 1, holding the
   * initial configuration and state machine data. Nodes that join later start empty and receive
   * a snapshot from the leader.
   */
  bootstrap(conf: ConfState, data: Uint8Array = new Uint8Array(0)): void {
    if (this.lastIndex() !== 0 || this.hardState.term !== 0) throw new Error('bootstrap needs empty storage');
    if (conf.voters.length === 0) throw new Error('bootstrap needs at least one voter');
    this.applySnapshot({ meta: { index: 1, term: 1, conf }, data });
    this.hardState = { term: 1, vote: null, commit: 1 };
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: { ...this.hardState }, confState: this.snap.meta.conf };
  }

  /** The HardState last persisted; the simulator reads it back after a crash. */
  persistedHardState(): HardState {
    return { ...this.hardState };
  }

  setHardState(hs: HardState): void {
    this.hardState = { ...hs };
  }

  firstIndex(): number {
    return this.base + 1;
  }

  lastIndex(): number {
    return this.base + this.ents.length;
  }

  term(i: number): number {
    if (i === this.base) return this.baseTerm;
    if (i < this.base) throw new StorageError('compacted', `entry ${i} is compacted (log starts after ${this.base})`);
    const e = this.ents[i - this.base - 1];
    if (e === undefined) throw new StorageError('unavailable', `entry ${i} is past the last index ${this.lastIndex()}`);
    return e.term;
  }

  entries(lo: number, hi: number, maxSize: number): Entry[] {
    if (lo <= this.base) throw new StorageError('compacted', `entry ${lo} is compacted (log starts after ${this.base})`);
    if (hi > this.lastIndex() + 1) {
      throw new StorageError('unavailable', `entries up to ${hi - 1} asked, last is ${this.lastIndex()}`);
    }
    return limitSize(this.ents, lo - this.base - 1, hi - this.base - 1, maxSize);
  }

  /** The entry at index i, or undefined outside [firstIndex, lastIndex]. For inspection. */
  entry(i: number): Entry | undefined {
    return i > this.base ? this.ents[i - this.base - 1] : undefined;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Appends entries, replacing any existing entries from the first new index on. */
  append(entries: readonly Entry[]): void {
    const first = entries[0];
    if (first === undefined) return;
    // Entries at or below the compaction point are already covered by the snapshot.
    const from = Math.max(0, this.base + 1 - first.index);
    if (from >= entries.length) return;
    const at = first.index + from - this.base - 1; // where entries[from] goes in ents
    if (at > this.ents.length) {
      throw new Error(`missing log entries: last is ${this.lastIndex()}, appending from ${first.index + from}`);
    }
    this.ents.length = at;
    for (let k = from; k < entries.length; k++) this.ents.push(entries[k]!);
  }

  /** Replaces the whole log with a snapshot received from the leader. */
  applySnapshot(s: Snapshot): void {
    if (s.meta.index <= this.snap.meta.index) {
      throw new StorageError('snapshot-out-of-date', `snapshot ${s.meta.index} is not newer than ${this.snap.meta.index}`);
    }
    this.snap = s;
    this.base = s.meta.index;
    this.baseTerm = s.meta.term;
    this.ents = [];
  }

  /**
   * Records a snapshot of the state machine as of `index`, which the driver has applied (so it is
   * in the log). `conf` must be the configuration as of `index` (RawNode.confState() right after
   * advance()). The entries stay until compact().
   */
  createSnapshot(index: number, conf: ConfState, data: Uint8Array): Snapshot {
    if (index <= this.snap.meta.index) {
      throw new StorageError('snapshot-out-of-date', `snapshot ${index} is not newer than ${this.snap.meta.index}`);
    }
    if (index > this.lastIndex()) throw new Error(`snapshot index ${index} is past the last index ${this.lastIndex()}`);
    this.snap = { meta: { index, term: this.term(index), conf }, data };
    return this.snap;
  }

  /**
   * Drops the entries up to and including `index`. Only what the latest snapshot covers can go:
   * a follower that needs a dropped entry is sent that snapshot instead.
   */
  compact(index: number): void {
    if (index <= this.base) return;
    if (index > this.snap.meta.index) {
      throw new Error(`cannot compact to ${index}: the latest snapshot only covers up to ${this.snap.meta.index}`);
    }
    this.baseTerm = this.term(index);
    this.ents = this.ents.slice(index - this.base);
    this.base = index;
  }
}

/** ents[lo, hi) limited to `maxSize` bytes, but at least one entry. */
export function limitSize(ents: readonly Entry[], lo: number, hi: number, maxSize: number): Entry[] {
  if (hi <= lo) return [];
  let size = entrySize(ents[lo]!);
  let end = lo + 1;
  while (end < hi) {
    size += entrySize(ents[end]!);
    if (size > maxSize) break;
    end++;
  }
  return ents.slice(lo, end);
}
