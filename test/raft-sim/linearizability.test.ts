import { describe, it, expect } from 'vitest';
import { checkHistory, type Operation } from './linearizability.js';

// Small histories with known answers, for the checker itself.

let id = 0;
const op = (o: Omit<Operation, 'id' | 'client' | 'key'> & { key?: string | undefined }): Operation => ({
  ...o,
  id: id++,
  client: `c${id}`,
  key: o.key ?? 'k',
});
const put = (value: string, call: number, ret: number, key?: string): Operation => op({ kind: 'put', value, call, ret, key });
const get = (output: string | null, call: number, ret: number, key?: string): Operation => op({ kind: 'get', output, call, ret, key });
const cas = (expected: string | null, value: string, output: boolean | undefined, call: number, ret: number): Operation =>
  op({ kind: 'cas', expected, value, output, call, ret });

describe('linearizability checker', () => {
  it('accepts a sequential history', () => {
    expect(checkHistory([put('a', 1, 2), get('a', 3, 4), cas('a', 'b', true, 5, 6), get('b', 7, 8)]).ok).toBe(true);
  });

  it('rejects a stale read after a completed write', () => {
    expect(checkHistory([put('a', 1, 2), put('b', 3, 4), get('a', 5, 6)]).ok).toBe(false);
  });

  it('lets concurrent operations take effect in either order', () => {
    // The read overlaps the write: it may see the old or the new value.
    expect(checkHistory([put('a', 1, 2), put('b', 3, 6), get('a', 4, 5)]).ok).toBe(true);
    expect(checkHistory([put('a', 1, 2), put('b', 3, 6), get('b', 4, 5)]).ok).toBe(true);
  });

  it('rejects two reads that see a write happen and then un-happen', () => {
    expect(checkHistory([put('a', 1, 2), put('b', 3, 10), get('b', 4, 5), get('a', 6, 7)]).ok).toBe(false);
  });

  it('checks compare-and-set outcomes', () => {
    expect(checkHistory([put('a', 1, 2), cas('a', 'b', false, 3, 4)]).ok).toBe(false);
    expect(checkHistory([put('a', 1, 2), cas('x', 'b', false, 3, 4), get('a', 5, 6)]).ok).toBe(true);
    expect(checkHistory([cas(null, 'b', true, 1, 2), get('b', 3, 4)]).ok).toBe(true);
  });

  it('a write with an unknown outcome may take effect late, or never', () => {
    const lost = put('x', 1, Infinity);
    expect(checkHistory([lost, get(null, 2, 3)]).ok).toBe(true); // not yet (or never)
    expect(checkHistory([put('y', 1, Infinity), get('y', 5, 6), get('y', 7, 8)]).ok).toBe(true); // later
    // But it takes effect at most once and not before it was called.
    expect(checkHistory([get('z', 1, 2), put('z', 3, Infinity)]).ok).toBe(false);
    expect(checkHistory([put('p', 1, 2), put('q', 3, Infinity), get('q', 4, 5), put('p', 6, 7), get('q', 8, 9)]).ok).toBe(false);
  });

  it('writes of unknown outcome that no read saw cost the search nothing, and change no verdict', () => {
    // 40 writes that may or may not have applied, overlapping each other and a few reads.
    const unknown = Array.from({ length: 40 }, (_, i) => put(`u${i}`, 10 + i, Infinity));
    const ok = [put('a', 0, 1), ...unknown, get('a', 60, 61), put('b', 62, 63), get('b', 64, 65)];
    expect(checkHistory(ok, 2_000)).toMatchObject({ ok: true });
    // One of them seen, and then an older value read again: still caught.
    const bad = [put('a', 0, 1), ...unknown, get('u7', 60, 61), get('a', 62, 63)];
    expect(checkHistory(bad, 2_000)).toMatchObject({ ok: false, reason: 'not linearizable' });
  });

  it('an unknown compare-and-set applies only if it matched', () => {
    expect(checkHistory([put('a', 1, 2), cas('a', 'b', undefined, 3, Infinity), get('b', 4, 5)]).ok).toBe(true);
    expect(checkHistory([put('a', 1, 2), cas('zzz', 'b', undefined, 3, Infinity), get('b', 4, 5)]).ok).toBe(false);
  });

  it('checks keys independently and names the bad one', () => {
    const r = checkHistory([put('a', 1, 2, 'k1'), get('a', 3, 4, 'k1'), put('a', 1, 2, 'k2'), get(null, 3, 4, 'k2')]);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.key).toBe('k2');
  });

  it('handles a large concurrent history quickly', () => {
    const ops: Operation[] = [];
    let t = 0;
    let last: string | null = null;
    for (let i = 0; i < 300; i++) {
      // Batches of three overlapping operations, each batch after the previous one.
      const base = t;
      const v = `v${i}`;
      ops.push(put(v, base + 1, base + 6));
      ops.push(get(last, base + 2, base + 4)); // sees the previous value: the put lands after it
      ops.push(get(v, base + 5, base + 7));
      last = v;
      t += 8;
    }
    const started = Date.now();
    expect(checkHistory(ops).ok).toBe(true);
    expect(Date.now() - started).toBeLessThan(2000);
  });
});
