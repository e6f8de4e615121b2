import { describe, expect, it } from 'vitest';
import { BATCH_PREFIX, MapWriter, MergedMap, SNAPSHOT_KEY, asRecord, batchKey, isRecordKey, type MapRecord } from './batched-map.js';

// The map a document carries as batches and snapshots: whatever order a reader gets the records
// in, and whichever it missed because a snapshot replaced them, it ends with the writer's map.

/** A document as the writer sees it: latest value per key, prefix deletion; and every record ever written. */
class FakeDoc {
  readonly entries = new Map<string, MapRecord>();
  readonly history: MapRecord[] = [];
  writes = 0;
  async setJson(key: string, json: string): Promise<void> {
    const rec = JSON.parse(json) as MapRecord;
    this.entries.set(key, rec);
    this.history.push(rec);
    this.writes++;
  }
  async deletePrefix(prefix: string): Promise<void> {
    for (const k of [...this.entries.keys()]) if (k.startsWith(prefix)) this.entries.delete(k);
  }
}

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

function shuffle<T>(xs: T[], r: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

const asObject = (m: MergedMap) => Object.fromEntries(m.list('').map((e) => [e.key, e.value]));

describe('MergedMap and MapWriter', () => {
  it('a reader ends with the writer map whatever order it gets records in (300 seeds, leaders taking over behind)', async () => {
    for (let seed = 1; seed <= 300; seed++) {
      const r = rng(seed);
      // The committed log: state after each index. Leaders publish what they have applied.
      const states: Map<string, unknown>[] = [new Map()];
      for (let i = 1; i <= 60; i++) {
        const s = new Map(states[i - 1]);
        for (let k = 0; k < 1 + Math.floor(r() * 3); k++) {
          const key = `k${Math.floor(r() * 12)}`;
          if (r() < 0.3) s.delete(key);
          else s.set(key, { v: i, k: key });
        }
        states.push(s);
      }
      const doc = new FakeDoc();
      let writer = new MapWriter(doc, '', 4 + Math.floor(r() * 8));
      let applied = 0;
      let published = 0;
      let first = true;
      while (applied < 60) {
        applied = Math.min(60, applied + 1 + Math.floor(r() * 4));
        if (r() < 0.1) {
          // A new leader (another author, same document) whose applied index may lag the old one's.
          writer = new MapWriter(doc, '', 4 + Math.floor(r() * 8));
          applied = Math.max(1, applied - Math.floor(r() * 5));
          first = true;
        }
        if (first) await writer.replace(states[applied]!, applied);
        else {
          const changes = new Map<string, unknown>();
          for (let i = published + 1; i <= applied; i++) {
            for (const k of new Set([...states[i - 1]!.keys(), ...states[i]!.keys()])) changes.set(k, states[applied]!.get(k));
          }
          await writer.write(changes, applied);
        }
        first = false;
        published = applied;
      }
      const reader = new MergedMap();
      // What the document holds now, and some of history (what live events delivered), in any order.
      for (const rec of shuffle([...doc.history.filter(() => r() < 0.6), ...doc.entries.values()], r)) reader.apply(rec);
      expect(asObject(reader), `seed ${seed}`).toEqual(Object.fromEntries(states[60]!));
      expect(reader.size).toBe(states[60]!.size);
      expect(reader.seq).toBeLessThanOrEqual(60); // a last pass that changed nothing writes nothing
    }
  });

  it('writes one batch of what changed, skips what did not, and compacts into a snapshot that replaces the batches', async () => {
    const doc = new FakeDoc();
    const w = new MapWriter(doc, 'p/', 4);
    expect(await w.write(new Map([['a', 1], ['b', 2]]), 1)).toEqual({ written: 2, removed: 0 });
    expect(doc.writes).toBe(1);
    expect([...doc.entries.keys()]).toEqual([batchKey('p/', 1)]);
    expect(await w.write(new Map<string, unknown>([['a', 1], ['b', undefined], ['c', undefined]]), 2)).toEqual({ written: 0, removed: 1 });
    expect(doc.entries.get(batchKey('p/', 2))!.entries).toEqual([['b', 2, null]]);
    expect(await w.write(new Map([['a', 1]]), 3)).toEqual({ written: 0, removed: 0 });
    expect(doc.writes).toBe(2); // nothing changed: nothing written
    await w.write(new Map([['d', 4], ['e', 5]]), 4); // 4 keys changed since the start: a snapshot
    expect([...doc.entries.keys()]).toEqual([`p/${SNAPSHOT_KEY}`]);
    const snap = doc.entries.get(`p/${SNAPSHOT_KEY}`)!;
    expect(snap).toEqual({ seq: 4, snapshot: true, entries: [['a', 1, 1], ['d', 4, 4], ['e', 4, 5]] });
    // A replace keeps the seq of unchanged keys and says which went.
    expect(await w.replace(new Map<string, unknown>([['a', 1], ['d', 40]]), 9)).toEqual({ written: 1, removed: 1 });
    expect(doc.entries.get(`p/${SNAPSHOT_KEY}`)!.entries).toEqual([['a', 1, 1], ['d', 9, 40]]);
  });

  it('ignores records a snapshot covers, and a removal that arrives before the value it removes', () => {
    const m = new MergedMap();
    expect(m.apply({ seq: 5, entries: [['x', 5, null]] })).toEqual([]);
    expect(m.apply({ seq: 3, entries: [['x', 3, 'old']] })).toEqual([]); // removed at 5 already
    expect(m.get('x')).toBeUndefined();
    expect(m.apply({ seq: 10, snapshot: true, entries: [['y', 7, 'y7']] })).toEqual(['y']);
    expect(m.apply({ seq: 9, entries: [['z', 9, 'z9']] })).toEqual([]); // covered by the snapshot at 10
    expect(m.apply({ seq: 12, entries: [['y', 12, null], ['z', 12, 'z12']] }).sort()).toEqual(['y', 'z']);
    expect(m.apply({ seq: 11, snapshot: true, entries: [['y', 7, 'y7']] })).toEqual([]); // y went at 12, z came at 12
    expect(asObject(m)).toEqual({ z: 'z12' });
    expect(m.entries()).toEqual([['z', 12, 'z12']]);
  });

  it('names its keys so that batches sort by seq and other layouts are not taken for records', () => {
    expect(batchKey('status/n1/', 255)).toBe(`status/n1/${BATCH_PREFIX}000000000000ff`);
    expect(batchKey('', 2 ** 53 - 1) > batchKey('', 2 ** 52)).toBe(true);
    expect(isRecordKey('status/n1/', 'status/n1/snapshot')).toBe(true);
    expect(isRecordKey('status/n1/', 'status/n1/vm/web')).toBe(false);
    expect(isRecordKey('', 'desired/VirtualMachine/web')).toBe(false);
    expect(asRecord({ rev: 3, value: {} })).toBeUndefined();
    expect(asRecord(null)).toBeUndefined();
  });
});
