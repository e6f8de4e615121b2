import { limitSize, type Storage } from './storage.js';
import { Unstable } from './unstable.js';
import type { Entry, Snapshot } from './types.js';

// The whole log as the core sees it, after etcd's log.go: the persisted part (Storage) followed by
// the unstable tail, plus the commit and applied cursors.
//
//   storage:  [firstIndex ........ storage.lastIndex]
//   unstable:                   [offset ........ lastIndex]   (indices >= offset read from here)
//   cursors:  applied <= committed <= lastIndex

export class RaftLog {
  readonly unstable: Unstable;
  /** Highest index known to be stored on a quorum. */
  committed: number;
  /** Highest index the driver has applied (advance() moves it). */
  applied: number;

  constructor(
    readonly storage: Storage,
    private readonly maxApplyingSize: number,
  ) {
    // Entries may be kept behind the snapshot (compaction lags it), but the state machine starts
    // from the snapshot, so that is what is applied (and committed) at least.
    const start = Math.max(storage.firstIndex() - 1, storage.snapshot().meta.index);
    this.unstable = new Unstable(storage.lastIndex() + 1);
    this.committed = start;
    this.applied = start;
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  /** The term of entry i, or undefined if i is compacted away or past the end. */
  term(i: number): number | undefined {
    // The entry before firstIndex is the snapshot (or compaction point) and has a known term.
    if (i < this.firstIndex() - 1 || i > this.lastIndex()) return undefined;
    return this.unstable.maybeTerm(i) ?? this.storage.term(i);
  }

  lastTerm(): number {
    return this.term(this.lastIndex()) ?? 0;
  }

  matchTerm(i: number, t: number): boolean {
    return this.term(i) === t;
  }

  /**
   * A candidate whose last entry is (lastIndex, term) is at least as up to date as this log
   * (Raft paper 5.4.1): a later last term wins, and for equal terms the longer log.
   */
  isUpToDate(lastIndex: number, term: number): boolean {
    const ourTerm = this.lastTerm();
    return term > ourTerm || (term === ourTerm && lastIndex >= this.lastIndex());
  }

  /**
   * The follower side of AppendEntries: if our entry `index` has term `logTerm`, append `ents`
   * (dropping any conflicting suffix), commit up to min(committed, last new index), and return
   * the last new index. Otherwise undefined (the leader must back up).
   */
  maybeAppend(index: number, logTerm: number, committed: number, ents: readonly Entry[]): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNew = index + ents.length;
    const ci = this.findConflict(ents);
    if (ci !== 0) {
      if (ci <= this.committed) {
        throw new Error(`entry ${ci} conflicts with a committed entry (committed ${this.committed})`);
      }
      this.append(ents.slice(ci - index - 1));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  /** Appends entries to the unstable tail (overwriting from ents[0].index); returns the last index. */
  append(ents: readonly Entry[]): number {
    const first = ents[0];
    if (first === undefined) return this.lastIndex();
    if (first.index - 1 < this.committed) {
      throw new Error(`appending at ${first.index} would overwrite committed entries (committed ${this.committed})`);
    }
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  /**
   * The index of the first entry in `ents` that is not in our log with the same term (0 if all
   * are). Entries must be contiguous.
   */
  findConflict(ents: readonly Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * The largest index <= `index` whose term is <= `term` (or whose term is unknown because it is
   * compacted): the fast-backtracking probe point. Entries in between cannot match a log whose
   * entry at `index` has term `term`, since terms only grow along a log.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    for (; index > 0; index--) {
      const ours = this.term(index);
      if (ours === undefined) return { index, term: 0 };
      if (ours <= term) return { index, term: ours };
    }
    return { index: 0, term: 0 };
  }

  /** The unstable entries, to persist. A copy: the driver holds it while the core keeps going. */
  unstableEntries(): Entry[] {
    return this.unstable.entries.slice();
  }

  hasPendingSnapshot(): boolean {
    return this.unstable.snapshot !== undefined;
  }

  /** Committed entries not yet applied (none while a snapshot is pending: it goes first). */
  nextCommittedEntries(): Entry[] {
    if (this.hasPendingSnapshot()) return [];
    const lo = Math.max(this.applied + 1, this.firstIndex());
    const hi = this.committed + 1;
    return lo < hi ? this.slice(lo, hi, this.maxApplyingSize) : [];
  }

  hasNextCommittedEntries(): boolean {
    if (this.hasPendingSnapshot()) return false;
    return Math.max(this.applied + 1, this.firstIndex()) <= this.committed;
  }

  /** The snapshot to send to a follower that needs compacted entries. */
  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  /** Entries from i on, at most maxSize bytes; undefined if i is compacted. */
  entries(i: number, maxSize: number): Entry[] | undefined {
    if (i > this.lastIndex()) return [];
    if (i < this.firstIndex()) return undefined;
    return this.slice(i, this.lastIndex() + 1, maxSize);
  }

  /** Entries [lo, hi) at most maxSize bytes (but at least one); lo must not be compacted. */
  slice(lo: number, hi: number, maxSize: number): Entry[] {
    if (lo < this.firstIndex() || hi > this.lastIndex() + 1) {
      throw new Error(`slice(${lo}, ${hi}) out of bounds [${this.firstIndex()}, ${this.lastIndex()}]`);
    }
    if (lo >= hi) return [];
    const offset = this.unstable.offset;
    let ents: Entry[] = [];
    if (lo < offset) {
      const stored = this.storage.entries(lo, Math.min(hi, offset), maxSize);
      // Storage stopped early because of the size limit: the unstable part would not fit either.
      if (stored.length < Math.min(hi, offset) - lo) return stored;
      ents = stored;
    }
    if (hi > offset) {
      const tail = this.unstable.slice(Math.max(lo, offset), hi);
      if (ents.length === 0) return limitSize(tail, 0, tail.length, maxSize);
      for (const e of tail) ents.push(e);
      return limitSize(ents, 0, ents.length, maxSize);
    }
    return ents;
  }

  commitTo(tocommit: number): void {
    if (tocommit <= this.committed) return; // never decrease
    if (tocommit > this.lastIndex()) {
      throw new Error(`commit ${tocommit} is out of range [last index ${this.lastIndex()}]; was the log lost?`);
    }
    this.committed = tocommit;
  }

  /**
   * The leader side of commitment: commit up to `maxIndex` (replicated on a quorum) only if that
   * entry is from the current term (Raft paper 5.4.2). An older-term entry held by a majority can
   * still be overwritten by a later leader (figure 8); it becomes committed indirectly once an
   * entry of the current term after it is.
   */
  maybeCommit(maxIndex: number, term: number, countOldTerms: boolean): boolean {
    if (maxIndex > this.committed && maxIndex <= this.lastIndex() && (countOldTerms || this.term(maxIndex) === term)) {
      this.commitTo(maxIndex);
      return true;
    }
    return false;
  }

  appliedTo(i: number): void {
    if (i === 0) return;
    if (i > this.committed || i < this.applied) {
      throw new Error(`applied(${i}) is out of range [prev applied ${this.applied}, committed ${this.committed}]`);
    }
    this.applied = i;
  }

  stableTo(i: number, t: number): void {
    this.unstable.stableTo(i, t);
  }

  stableSnapTo(i: number): void {
    this.unstable.stableSnapTo(i);
  }

  /** Replaces the log with a snapshot from the leader (not yet persisted). */
  restore(s: Snapshot): void {
    this.committed = s.meta.index;
    this.unstable.restore(s);
  }
}

