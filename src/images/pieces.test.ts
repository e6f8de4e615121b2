import { describe, expect, it } from 'vitest';
import { Bitmap } from './bitmap.js';
import { checkPieceSize, manifestProblem, owner, parseHashSeq, pieceCount, pieceLength, pieceName } from './pieces.js';

describe('pieces', () => {
  it('counts and sizes pieces', () => {
    expect(pieceCount(0, 8)).toBe(0);
    expect(pieceCount(16, 8)).toBe(2);
    expect(pieceCount(17, 8)).toBe(3);
    expect([0, 1, 2, 3].map((i) => pieceLength(i, 17, 8))).toEqual([8, 8, 1, 0]);
    expect(pieceName(7)).toBe('000007');
  });

  it('checks piece sizes', () => {
    expect(() => checkPieceSize(8 * 1024 * 1024)).not.toThrow();
    expect(() => checkPieceSize(1000)).toThrow(/piece size/);
    expect(() => checkPieceSize(16 * 1024 + 1)).toThrow(/multiple of 1 KiB/);
  });

  it('parses a hash sequence', () => {
    const a = Buffer.alloc(32, 1);
    const b = Buffer.alloc(32, 2);
    expect(parseHashSeq(Buffer.concat([a, b]))).toEqual([a.toString('hex'), b.toString('hex')]);
    expect(() => parseHashSeq(Buffer.alloc(33))).toThrow(/multiple of 32/);
  });

  it('finds inconsistent manifests', () => {
    const h = 'a'.repeat(64);
    const ok = { hash: `blake3:${h}`, size: 20 * 1024, pieceSize: 16 * 1024, collection: h, pieces: [h, h] };
    expect(manifestProblem(ok)).toBeNull();
    expect(manifestProblem({ ...ok, pieces: [h] })).toMatch(/1 pieces listed/);
    expect(manifestProblem({ ...ok, hash: 'x' })).toMatch(/bad image hash/);
  });

  it('rendezvous ownership is stable and spread', () => {
    const nodes = ['a', 'b', 'c', 'd'];
    const counts = new Map<string, number>();
    for (let i = 0; i < 400; i++) {
      const o = owner(`img/${i}`, nodes)!;
      expect(owner(`img/${i}`, [...nodes].reverse())).toBe(o);
      counts.set(o, (counts.get(o) ?? 0) + 1);
    }
    for (const n of nodes) expect(counts.get(n)).toBeGreaterThan(60);
  });
});

describe('Bitmap', () => {
  it('sets, counts, encodes and decodes', () => {
    const b = Bitmap.empty(10);
    b.set(0);
    b.set(9);
    b.set(9);
    expect(b.count).toBe(2);
    expect(b.complete).toBe(false);
    const d = Bitmap.decode(b.encode(), 10);
    expect([...d.indexes()]).toEqual([0, 9]);
    expect(Bitmap.full(10).complete).toBe(true);
    expect(Bitmap.empty(0).complete).toBe(true);
  });

  it('refuses bitmaps of the wrong length or with bits past the end', () => {
    expect(() => Bitmap.decode(Bitmap.empty(10).encode(), 20)).toThrow(/bytes for 20/);
    expect(() => Bitmap.decode(Buffer.from([0, 0b1000_0000]).toString('base64'), 10)).toThrow(/past the last/);
    expect(() => Bitmap.decode('!!', 8)).toThrow(/base64/);
  });
});
