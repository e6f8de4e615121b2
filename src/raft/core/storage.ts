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
 * WAL. Entries after the latest snapshot are kept in one array; `ents[0]` would be index
 * `snap.meta.index + 1`.
 */
export class MemoryStorage implements Storage {
  private hardState: HardState = { term: 0, vote: null, commit: 0 };
  private snap: Snapshot = { meta: { index: 0, term: 0, conf: EMPTY_CONF }, data: new Uint8Array(0) };
  private ents: Entry[] = [];

  /**
   * Writes the state a brand new cluster starts from: a snapshot at index 1, term 1, holding the
   * initial configuration and state machine data. Nodes that join later start empty and receive
   * a snapshot from the leader.
   */
  bootstrap(conf: ConfState, data: Uint8Array = new Uint8Array(0)): void {
    if (this.snap.meta.index !== 0 || this.ents.length > 0 || this.hardState.term !== 0) {
      throw new Error('bootstrap needs empty storage');
    }
    if (conf.voters.length === 0) throw new Error('bootstrap needs at least one voter');
    this.applySnapshot({ meta: { index: 1, term: 1, conf }, data });
    this.hardState = { term: 1, vote: null, commit: 1 };
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: { ...this.hardState }, confState: this.snap.meta.conf };
  }

  setHardState(hs: HardState): void {
    this.hardState = { ...hs };
  }

  firstIndex(): number {
    return this.snap.meta.index + 1;
  }

  lastIndex(): number {
    return this.snap.meta.index + this.ents.length;
  }

  term(i: number): number {
    const base = this.snap.meta.index;
    if (i === base) return this.snap.meta.term;
    if (i < base) throw new StorageError('compacted', `entry ${i} is compacted (snapshot at ${base})`);
    const e = this.ents[i - base - 1];
    if (e === undefined) throw new StorageError('unavailable', `entry ${i} is past the last index ${this.lastIndex()}`);
    return e.term;
  }

  entries(lo: number, hi: number, maxSize: number): Entry[] {
    const base = this.snap.meta.index;
    if (lo <= base) throw new StorageError('compacted', `entry ${lo} is compacted (snapshot at ${base})`);
    if (hi > this.lastIndex() + 1) throw new StorageError('unavailable', `entries up to ${hi - 1} asked, last is ${this.lastIndex()}`);
    return limitSize(this.ents, lo - base - 1, hi - base - 1, maxSize);
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Appends entries, replacing any existing entries from the first new index on. */
  append(entries: readonly Entry[]): void {
    const first = entries[0];
    if (first === undefined) return;
    const base = this.snap.meta.index;
    let from = 0;
    if (first.index <= base) {
      // Entries already covered by the snapshot are skipped.
      from = base + 1 - first.index;
      if (from >= entries.length) return;
    }
    const at = first.index + from - base - 1; // position of entries[from] in ents
    if (at > this.ents.length) {
      throw new Error(`missing log entries: last is ${this.lastIndex()}, appending from ${first.index + from}`);
    }
    this.ents.length = at;
    for (let k = from; k < entries.length; k++) this.ents.push(entries[k]!);
  }

  /** Replaces the whole log with a snapshot received from the leader. */
  applySnapshot(s: Snapshot): void {
    if (s.meta.index <= this.snap.meta.index && this.snap.meta.index !== 0) {
      throw new StorageError('snapshot-out-of-date', `snapshot ${s.meta.index} is not newer than ${this.snap.meta.index}`);
    }
    this.snap = s;
    this.ents = [];
  }

  /**
   * Records a snapshot of the state machine as of `index` (which must be applied, hence in the
   * log). The entries stay until compact().
   */
  createSnapshot(index: number, conf: ConfState, data: Uint8Array): Snapshot {
    if (index <= this.snap.meta.index) {
      throw new StorageError('snapshot-out-of-date', `snapshot ${index} is not newer than ${this.snap.meta.index}`);
    }
    if (index > this.lastIndex()) throw new Error(`snapshot index ${index} is past the last index ${this.lastIndex()}`);
    const term = this.term(index);
    // Keep the entries after the new snapshot point; the ones before it are dropped by compact().
    const kept = this.ents.slice(index - this.snap.meta.index);
    const older = this.ents.slice(0, index - this.snap.meta.index);
    this.snap = { meta: { index, term, conf }, data };
    // Until compact() is called the log still reaches back to the old first index, so remember
    // those entries in front of the snapshot point.
    this.retained = older.length > 0 ? { first: index - older.length + 1, ents: older } : this.retained;
    this.ents = kept;
    this.retained = this.mergeRetained(older, index);
    return this.snap;
  }

  private retained: { first: number; ents: Entry[] } | undefined;
  private mergeRetained(_older: Entry[], _index: number): { first: number; ents: Entry[] } | undefined {
    return undefined;
  }

  /** Drops the entries up to and including `index`, which must be covered by the snapshot. */
  compact(index: number): void {
    void index;
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
