import { describe, expect, it } from 'vitest';
import { Bitmap } from './bitmap.js';
import { HoldingsPublisher, holdersOf, holdingsOf, imagesHeld, parseHolding, recordOf, type StatusReader } from './holdings.js';
import type { PieceManifest } from './pieces.js';

const hex = 'ab'.repeat(32);
const hash = `blake3:${hex}`;
const m: PieceManifest = { hash, size: 40 * 1024, pieceSize: 16 * 1024, collection: 'cd'.repeat(32), pieces: ['01'.repeat(32), '02'.repeat(32), '03'.repeat(32)] };

/** A status view over a plain map: status/<node>/<sub> -> value (what StatusView shows of trusted entries). */
function view(entries: Record<string, Record<string, unknown>>): StatusReader {
  return {
    nodes: () => Object.keys(entries).sort(),
    get: <T>(node: string, sub: string) => entries[node]?.[sub] as T | undefined,
    list: <T>(node: string, sub = '') =>
      Object.entries(entries[node] ?? {})
        .filter(([k]) => k.startsWith(sub))
        .map(([key, value]) => ({ key, value: value as T })),
  };
}

describe('holdings in the status document', () => {
  it('reads whole and partial holders of an image, ignoring malformed records', () => {
    const v = view({
      A: { [`images/${hex}`]: recordOf(m, 'all', 1) },
      B: { [`images/${hex}`]: recordOf(m, Bitmap.of(3, [1]), 2) },
      C: { [`images/${hex}`]: { v: 1, size: 1, pieceSize: 16384, pieces: 7, collection: m.collection, have: 'all' } },
      D: { [`images/${hex}`]: { ...recordOf(m, 'all', 1), have: 'zzz' } },
      E: { 'vm/web': { phase: 'Running' } },
    });
    const hs = holdingsOf(v, hash);
    expect(hs.map((h) => h.nodeId)).toEqual(['A', 'B']);
    expect(hs[1]!.have).not.toBe('all');
    expect([...(hs[1]!.have as Bitmap).indexes()]).toEqual([1]);
    expect(holdersOf(v, hash)).toEqual(['A']);
    const all = imagesHeld(v);
    expect(all.get(hash)).toEqual({ size: m.size, holders: ['A'], partial: [{ nodeId: 'B', pieces: 1, of: 3 }] });
  });

  it('a bitmap with every piece is published as "all"', () => {
    expect(recordOf(m, Bitmap.full(3), 5).have).toBe('all');
    expect(parseHolding('A', hex, recordOf(m, Bitmap.of(3, [0, 2]), 5))?.have).toBeInstanceOf(Bitmap);
  });
});

describe('HoldingsPublisher', () => {
  function writer() {
    const doc = new Map<string, unknown>();
    const log: string[] = [];
    return {
      doc,
      log,
      set: async (sub: string, value: unknown) => {
        doc.set(sub, value);
        log.push(`set ${sub} ${(value as { have: string }).have}`);
      },
      remove: async (sub: string) => {
        doc.delete(sub);
        log.push(`remove ${sub}`);
      },
    };
  }

  it('remembers what to say until the document is open, then says it', async () => {
    const p = new HoldingsPublisher({ minIntervalMs: 10 });
    p.full(m);
    const w = writer();
    p.attach(w);
    await p.flush();
    expect(w.doc.get(`images/${hex}`)).toMatchObject({ have: 'all', collection: m.collection, pieces: 3 });
    p.stop();
  });

  it('coalesces piece-by-piece progress, and whole or removed goes at once', async () => {
    const w = writer();
    const p = new HoldingsPublisher({ writer: w, minIntervalMs: 200 });
    const have = Bitmap.empty(3);
    p.partial(m, have);
    await new Promise((r) => setTimeout(r, 20));
    for (const i of [0, 1]) {
      have.set(i);
      p.partial(m, have);
    }
    await new Promise((r) => setTimeout(r, 20));
    expect(w.log).toHaveLength(1); // the first (empty) record; the rest waits for the interval
    await new Promise((r) => setTimeout(r, 250));
    expect(w.log).toHaveLength(2);
    expect(Bitmap.decode((w.doc.get(`images/${hex}`) as { have: string }).have, 3).count).toBe(2);
    p.full(m);
    await new Promise((r) => setTimeout(r, 20));
    expect(w.log.at(-1)).toBe(`set images/${hex} all`);
    p.remove(hash);
    await p.flush();
    expect(w.log.at(-1)).toBe(`remove images/${hex}`);
    expect(p.published(hash)).toBeNull();
    p.stop();
  });

  it('withdraws a record it never wrote in this run (left by an earlier one)', async () => {
    const w = writer();
    const p = new HoldingsPublisher({ writer: w });
    p.remove(hash);
    await p.flush();
    expect(w.log).toEqual([`remove images/${hex}`]);
    p.stop();
  });
});
