import { describe, it, expect } from 'vitest';
import { MemoryStorage, StorageError } from './storage.js';
import type { Entry } from './types.js';

const ent = (index: number, term: number, data = ''): Entry => ({ index, term, type: 'normal', data: new TextEncoder().encode(data) });
const idx = (es: Entry[]): [number, number][] => es.map((e) => [e.index, e.term]);

describe('MemoryStorage', () => {
  it('starts empty, or from a bootstrap snapshot at index 1', () => {
    const s = new MemoryStorage();
    expect([s.firstIndex(), s.lastIndex(), s.term(0)]).toEqual([1, 0, 0]);
    s.bootstrap({ voters: ['a', 'b'], learners: [] });
    expect([s.firstIndex(), s.lastIndex(), s.term(1)]).toEqual([2, 1, 1]);
    expect(s.initialState()).toEqual({ hardState: { term: 1, vote: null, commit: 1 }, confState: { voters: ['a', 'b'], learners: [] } });
    expect(() => s.bootstrap({ voters: ['a'], learners: [] })).toThrow(/empty storage/);
  });

  it('appends, and a conflicting append replaces the suffix', () => {
    const s = new MemoryStorage();
    s.append([ent(1, 1), ent(2, 1), ent(3, 1)]);
    s.append([ent(2, 2), ent(3, 2), ent(4, 2)]);
    expect(idx(s.entries(1, 5, Infinity))).toEqual([[1, 1], [2, 2], [3, 2], [4, 2]]);
    s.append([ent(3, 3)]);
    expect(s.lastIndex()).toBe(3);
    expect(() => s.append([ent(5, 3)])).toThrow(/missing log entries/);
  });

  it('limits entries by size but returns at least one', () => {
    const s = new MemoryStorage();
    s.append([ent(1, 1, 'x'.repeat(100)), ent(2, 1, 'x'.repeat(100)), ent(3, 1)]);
    expect(s.entries(1, 4, 1)).toHaveLength(1);
    expect(s.entries(1, 4, 2 * (100 + 16))).toHaveLength(2);
    expect(s.entries(1, 4, Infinity)).toHaveLength(3);
  });

  it('keeps entries behind a snapshot until compacted, then reports them compacted', () => {
    const s = new MemoryStorage();
    s.append([1, 2, 3, 4, 5].map((i) => ent(i, 1)));
    s.createSnapshot(4, { voters: ['a'], learners: [] }, new Uint8Array([9]));
    expect(s.firstIndex()).toBe(1); // not compacted yet
    expect(() => s.compact(5)).toThrow(/only covers up to 4/);
    s.compact(3);
    expect([s.firstIndex(), s.lastIndex(), s.term(3)]).toEqual([4, 5, 1]);
    expect(() => s.term(2)).toThrow(StorageError);
    expect(() => s.entries(3, 5, Infinity)).toThrow(/compacted/);
    expect(idx(s.entries(4, 6, Infinity))).toEqual([[4, 1], [5, 1]]);
    // Appending entries the snapshot already covers skips them.
    s.append([ent(3, 1), ent(4, 1), ent(5, 1), ent(6, 2)]);
    expect(s.lastIndex()).toBe(6);
  });

  it('applySnapshot replaces the log; an older snapshot is refused', () => {
    const s = new MemoryStorage();
    s.append([ent(1, 1), ent(2, 1)]);
    s.applySnapshot({ meta: { index: 10, term: 3, conf: { voters: ['a'], learners: [] } }, data: new Uint8Array() });
    expect([s.firstIndex(), s.lastIndex(), s.term(10)]).toEqual([11, 10, 3]);
    expect(() => s.applySnapshot({ meta: { index: 9, term: 3, conf: { voters: [], learners: [] } }, data: new Uint8Array() })).toThrow(
      StorageError,
    );
    expect(() => s.term(11)).toThrow(/past the last index/);
  });
});
