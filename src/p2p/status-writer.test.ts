import { describe, expect, it } from 'vitest';
import type { ReplicatedDoc } from './doc.js';
import { StatusWriter, statusKey } from './status-doc.js';

// The status writer against a document whose writes take as long as the test says: one write of
// a key at a time, the newest value last, failures retried.

class SlowDoc {
  readonly stored = new Map<string, unknown>();
  readonly calls: { key: string; value: unknown }[] = [];
  inFlight = new Map<string, number>();
  maxInFlight = 0;
  failNext = 0;
  delays: number[] = [];

  async set(key: string, value: unknown): Promise<void> {
    this.calls.push({ key, value });
    const n = (this.inFlight.get(key) ?? 0) + 1;
    this.inFlight.set(key, n);
    this.maxInFlight = Math.max(this.maxInFlight, n);
    await new Promise((r) => setTimeout(r, this.delays.shift() ?? 1));
    this.inFlight.set(key, n - 1);
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('injected failure');
    }
    this.stored.set(key, value);
  }
}

const asDoc = (d: SlowDoc) => d as unknown as ReplicatedDoc;

describe('StatusWriter', () => {
  it('writes one key at a time, so that the newest value lands last, and skips values already superseded', async () => {
    const doc = new SlowDoc();
    doc.delays = [50, 1, 1, 1]; // the first write is slow: without ordering, the second would land first
    const w = new StatusWriter(asDoc(doc), 'n1');
    const first = w.set('vm/web', { phase: 'Pending' });
    await new Promise((r) => setTimeout(r, 10)); // in flight now
    const writes = ['Starting', 'Running', 'Running2'].map((phase) => w.set('vm/web', { phase }));
    await Promise.all([first, ...writes]);
    expect(doc.maxInFlight).toBe(1);
    expect(doc.stored.get(statusKey('n1', 'vm/web'))).toEqual({ phase: 'Running2' });
    // The three that came while the first was in flight were written as one: the newest.
    expect(doc.calls.map((c) => (c.value as { phase: string }).phase)).toEqual(['Pending', 'Running2']);
  });

  it('keeps keys independent of each other', async () => {
    const doc = new SlowDoc();
    doc.delays = [30, 1];
    const w = new StatusWriter(asDoc(doc), 'n1');
    const t0 = performance.now();
    await Promise.all([w.set('vm/a', 1), w.set('vm/b', 2)]);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect([...doc.stored.values()].sort()).toEqual([1, 2]);
  });

  it('retries a failed write, unless a newer value for the key came meanwhile', async () => {
    const doc = new SlowDoc();
    doc.failNext = 1;
    const w = new StatusWriter(asDoc(doc), 'n1');
    await expect(w.set('vm/web', 'first')).rejects.toThrow('injected failure');
    await new Promise((r) => setTimeout(r, 800)); // the retry after 500 ms
    expect(doc.stored.get(statusKey('n1', 'vm/web'))).toBe('first');

    doc.failNext = 1;
    await expect(w.set('vm/web', 'second')).rejects.toThrow();
    await w.set('vm/web', 'third');
    await new Promise((r) => setTimeout(r, 800));
    expect(doc.stored.get(statusKey('n1', 'vm/web'))).toBe('third');
    expect(doc.calls.filter((c) => c.value === 'second')).toHaveLength(1); // not retried: superseded
  });

  it('stops retrying once closed', async () => {
    const doc = new SlowDoc();
    doc.failNext = 1;
    const w = new StatusWriter(asDoc(doc), 'n1');
    await expect(w.set('vm/web', 'x')).rejects.toThrow();
    w.close();
    await new Promise((r) => setTimeout(r, 700));
    expect(doc.calls).toHaveLength(1);
  });
});
