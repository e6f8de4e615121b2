import { describe, it, expect } from 'vitest';
import { RaftLog } from './log.js';
import { MemoryStorage } from './storage.js';
import { Unstable } from './unstable.js';
import type { Entry } from './types.js';

const ent = (index: number, term: number): Entry => ({ index, term, type: 'normal', data: new Uint8Array() });
const terms = (es: readonly Entry[]): number[] => es.map((e) => e.term);

/** A log whose storage holds terms[0] at index 1, terms[1] at index 2, ... */
function logOf(persisted: number[], unstable: number[] = []): RaftLog {
  const s = new MemoryStorage();
  s.append(persisted.map((t, i) => ent(i + 1, t)));
  const log = new RaftLog(s, Infinity);
  if (unstable.length > 0) log.append(unstable.map((t, i) => ent(persisted.length + i + 1, t)));
  return log;
}

describe('Unstable', () => {
  it('ignores a stableTo for an entry that was overwritten while being persisted', () => {
    const u = new Unstable(5);
    u.truncateAndAppend([ent(5, 1), ent(6, 1), ent(7, 1)]);
    u.truncateAndAppend([ent(6, 2)]); // a new leader replaced 6 and dropped 7
    u.stableTo(7, 1); // the write of 5..7 (term 1) finished
    expect(u.offset).toBe(5);
    expect(terms(u.entries)).toEqual([1, 2]);
    u.stableTo(6, 2);
    expect(u.entries).toEqual([]);
    expect(u.offset).toBe(7);
  });

  it('appending at or before the offset replaces everything unstable', () => {
    const u = new Unstable(5);
    u.truncateAndAppend([ent(5, 1), ent(6, 1)]);
    u.truncateAndAppend([ent(4, 2)]);
    expect([u.offset, terms(u.entries)]).toEqual([4, [2]]);
  });
});

describe('RaftLog', () => {
  it('reads terms across storage and unstable entries', () => {
    const log = logOf([1, 1, 2], [3, 3]);
    expect([1, 2, 3, 4, 5].map((i) => log.term(i))).toEqual([1, 1, 2, 3, 3]);
    expect(log.term(6)).toBeUndefined();
    expect(terms(log.slice(2, 6, Infinity))).toEqual([1, 2, 3, 3]);
    expect(log.unstableEntries()).toHaveLength(2);
  });

  it('maybeAppend: rejects a mismatching previous entry, truncates a conflict, keeps matching entries', () => {
    const log = logOf([1, 1, 2, 2]);
    expect(log.maybeAppend(4, 3, 0, [])).toBeUndefined(); // our 4 has term 2
    expect(log.maybeAppend(5, 2, 0, [])).toBeUndefined(); // we have no 5
    expect(log.maybeAppend(2, 1, 2, [ent(3, 2), ent(4, 2)])).toBe(4); // all match: nothing changes
    expect(log.unstableEntries()).toEqual([]);
    expect(log.committed).toBe(2);
    expect(log.maybeAppend(2, 1, 9, [ent(3, 3)])).toBe(3); // conflict at 3: 3 and 4 replaced
    expect(terms(log.slice(1, log.lastIndex() + 1, Infinity))).toEqual([1, 1, 3]);
    expect(log.committed).toBe(3); // min(leader commit, last new index)
    expect(() => log.maybeAppend(1, 1, 3, [ent(2, 4)])).toThrow(/committed/);
  });

  it('findConflictByTerm skips whole terms', () => {
    const log = logOf([1, 1, 2, 2, 2, 5, 5]);
    expect(log.findConflictByTerm(7, 4)).toEqual({ index: 5, term: 2 });
    expect(log.findConflictByTerm(7, 5)).toEqual({ index: 7, term: 5 });
    expect(log.findConflictByTerm(5, 1)).toEqual({ index: 2, term: 1 });
    expect(log.findConflictByTerm(5, 0)).toEqual({ index: 0, term: 0 });
  });

  it('isUpToDate compares the last term first, then the length', () => {
    const log = logOf([1, 2, 2]);
    expect(log.isUpToDate(1, 3)).toBe(true);
    expect(log.isUpToDate(3, 2)).toBe(true);
    expect(log.isUpToDate(2, 2)).toBe(false);
    expect(log.isUpToDate(9, 1)).toBe(false);
  });

  it('commits by count only entries of the current term (unless the figure-8 bug is on)', () => {
    const log = logOf([1, 1, 2, 3]);
    expect(log.maybeCommit(3, 3, false)).toBe(false); // entry 3 is from term 2
    expect(log.maybeCommit(4, 3, false)).toBe(true);
    expect(log.committed).toBe(4);
    const buggy = logOf([1, 1, 2, 3]);
    expect(buggy.maybeCommit(3, 3, true)).toBe(true);
  });

  it('hands out committed entries once, and none while a snapshot is pending', () => {
    const log = logOf([1, 1, 1]);
    log.commitTo(2);
    expect(log.nextCommittedEntries().map((e) => e.index)).toEqual([1, 2]);
    log.appliedTo(2);
    expect(log.hasNextCommittedEntries()).toBe(false);
    log.restore({ meta: { index: 10, term: 4, conf: { voters: [], learners: [] } }, data: new Uint8Array() });
    expect([log.firstIndex(), log.lastIndex(), log.committed, log.term(10)]).toEqual([11, 10, 10, 4]);
    expect(log.hasNextCommittedEntries()).toBe(false);
    expect(log.nextCommittedEntries()).toEqual([]);
  });

  it('starts applied at the storage snapshot even when older entries are still kept', () => {
    const s = new MemoryStorage();
    s.append([1, 2, 3, 4, 5].map((i) => ent(i, 1)));
    s.createSnapshot(4, { voters: ['a'], learners: [] }, new Uint8Array());
    s.compact(2);
    const log = new RaftLog(s, Infinity);
    expect([log.firstIndex(), log.applied, log.committed]).toEqual([3, 4, 4]);
  });

  it('never moves commit backwards, nor past the last index', () => {
    const log = logOf([1, 1]);
    log.commitTo(2);
    log.commitTo(1);
    expect(log.committed).toBe(2);
    expect(() => log.commitTo(3)).toThrow(/out of range/);
  });
});
