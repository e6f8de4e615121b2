import { describe, expect, it } from 'vitest';
import { planEviction, type CacheEntry } from './cache.js';

// Table tests of the cache's decision: what goes, in which order, and what never goes.

const e = (hash: string, o: Partial<CacheEntry> = {}): CacheEntry => ({ hash, pieceBytes: 100, fileBytes: 0, lastUsed: 0, inUse: false, busy: false, ...o });

const cases: { name: string; entries: CacheEntry[]; limit: number | null; dropFiles?: string[]; evict?: string[]; after?: number; over?: number }[] = [
  { name: 'under the limit: nothing goes', entries: [e('a'), e('b')], limit: 500, evict: [], dropFiles: [], after: 200 },
  { name: 'no limit: images stay', entries: [e('a'), e('b')], limit: null, evict: [], over: 0 },
  {
    name: 'over the limit: least recently used first, until it fits',
    entries: [e('a', { lastUsed: 30 }), e('b', { lastUsed: 10 }), e('c', { lastUsed: 20 }), e('d', { lastUsed: 40 })],
    limit: 250,
    evict: ['b', 'c'],
    after: 200,
  },
  {
    name: 'an image a VM here needs never goes, even the oldest',
    entries: [e('a', { lastUsed: 1, inUse: true }), e('b', { lastUsed: 2 }), e('c', { lastUsed: 3 })],
    limit: 150,
    evict: ['b', 'c'],
    after: 100,
    over: 0,
  },
  {
    name: 'only images in use left: stays over the limit, says by how much',
    entries: [e('a', { inUse: true }), e('b', { inUse: true }), e('c')],
    limit: 100,
    evict: ['c'],
    after: 200,
    over: 100,
  },
  { name: 'an image being fetched or written out is left alone', entries: [e('a', { busy: true, lastUsed: 0 }), e('b', { lastUsed: 5 })], limit: 100, evict: ['b'] },
  {
    name: 'files of images no VM needs go at once, whatever the limit; their images stay',
    entries: [e('a', { fileBytes: 100 }), e('b', { fileBytes: 100, inUse: true }), e('c', { fileBytes: 100, busy: true })],
    limit: null,
    dropFiles: ['a'],
    evict: [],
    after: 500,
  },
  {
    name: 'dropping files can be enough',
    entries: [e('a', { fileBytes: 100, lastUsed: 1 }), e('b', { lastUsed: 2 })],
    limit: 200,
    dropFiles: ['a'],
    evict: [],
    after: 200,
  },
  {
    name: 'ties on last use go in hash order (stable plans)',
    entries: [e('b'), e('a'), e('c')],
    limit: 100,
    evict: ['a', 'b'],
  },
];

describe('planEviction', () => {
  for (const c of cases) {
    it(c.name, () => {
      const p = planEviction(c.entries, c.limit);
      if (c.dropFiles) expect(p.dropFiles).toEqual(c.dropFiles);
      if (c.evict) expect(p.evict).toEqual(c.evict);
      if (c.after !== undefined) expect(p.after).toBe(c.after);
      if (c.over !== undefined) expect(p.over).toBe(c.over);
      expect(p.before).toBe(c.entries.reduce((n, x) => n + x.pieceBytes + x.fileBytes, 0));
    });
  }
});
