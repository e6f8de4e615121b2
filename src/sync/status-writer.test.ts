import { describe, expect, it } from 'vitest';
import { MergedMap, asRecord } from '../p2p/index.js';
import { StatusWriter, statusKey } from './status-doc.js';

// The status writer against a document whose writes take as long as the test says: one write in
// flight at a time, what came meanwhile written together with each key's newest value, failures
// retried.

class SlowDoc {
  readonly calls: { key: string; entries: [string, number, unknown][] }[] = [];
  readonly map = new MergedMap(); // what a reader of everything written would see
  inFlight = 0;
  maxInFlight = 0;
  failNext = 0;
  delays: number[] = [];

  async setJson(key: string, json: string): Promise<void> {
    const rec = asRecord(JSON.parse(json))!;
    this.calls.push({ key, entries: rec.entries });
    this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
    await new Promise((r) => setTimeout(r, this.delays.shift() ?? 1));
    this.inFlight--;
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('injected failure');
    }
    this.map.apply(rec);
  }

  async deletePrefix(): Promise<void> {}

  values(): unknown[] {
    return this.calls.flatMap((c) => c.entries.map((e) => e[2]));
  }
}

describe('StatusWriter', () => {
  it('writes one batch at a time, and what came meanwhile as one batch with the newest values', async () => {
    const doc = new SlowDoc();
    doc.delays = [50, 1, 1, 1]; // the first write is slow: what comes during it waits
    const w = new StatusWriter(doc, 'n1');
    const first = w.set('vm/web', { phase: 'Pending' });
    await new Promise((r) => setTimeout(r, 10)); // in flight now
    const writes = ['Starting', 'Running', 'Running2'].map((phase) => w.set('vm/web', { phase }));
    const other = w.set('vm/db', { phase: 'Running' });
    await Promise.all([first, ...writes, other]);
    expect(doc.maxInFlight).toBe(1);
    expect(doc.map.get('vm/web')).toEqual({ phase: 'Running2' });
    expect(doc.calls).toHaveLength(2);
    expect(doc.calls[0]!.key.startsWith(statusKey('n1', 'batch/'))).toBe(true);
    expect(doc.values()).toEqual([{ phase: 'Pending' }, { phase: 'Running2' }, { phase: 'Running' }]);
  });

  it('gathers the writes of one burst into one entry', async () => {
    const doc = new SlowDoc();
    const w = new StatusWriter(doc, 'n1');
    await Promise.all(Array.from({ length: 100 }, (_, i) => w.set(`vm/v${i}`, i)));
    expect(doc.calls).toHaveLength(1);
    expect(doc.map.size).toBe(100);
    await w.remove('vm/v7');
    expect(doc.map.get('vm/v7')).toBeUndefined();
    expect(doc.map.size).toBe(99);
  });

  it('retries a failed write, with the newest value of each key', async () => {
    const doc = new SlowDoc();
    doc.failNext = 1;
    const w = new StatusWriter(doc, 'n1');
    await expect(w.set('vm/web', 'first')).rejects.toThrow('injected failure');
    await new Promise((r) => setTimeout(r, 800)); // the retry after 500 ms
    expect(doc.map.get('vm/web')).toBe('first');

    doc.failNext = 1;
    await expect(w.set('vm/web', 'second')).rejects.toThrow();
    await w.set('vm/web', 'third'); // lands with the retry
    expect(doc.map.get('vm/web')).toBe('third');
    expect(doc.values().filter((v) => v === 'second')).toHaveLength(1); // not retried: superseded
  });

  it('stops retrying once closed', async () => {
    const doc = new SlowDoc();
    doc.failNext = 1;
    const w = new StatusWriter(doc, 'n1');
    await expect(w.set('vm/web', 'x')).rejects.toThrow();
    w.close();
    await new Promise((r) => setTimeout(r, 700));
    expect(doc.calls).toHaveLength(1);
  });

  it('gives up what is in flight or queued at close, and takes nothing after it', async () => {
    const doc = new SlowDoc();
    doc.delays = [50];
    doc.failNext = 1; // the document closing under the write in flight
    const w = new StatusWriter(doc, 'n1');
    const inFlight = w.set('vm/web', 'x');
    await new Promise((r) => setTimeout(r, 10));
    const queued = w.set('vm/db', 'y');
    w.close();
    await expect(queued).rejects.toThrow('closed');
    await expect(inFlight).rejects.toThrow('injected failure');
    await expect(w.set('vm/web', 'z')).rejects.toThrow('closed');
    await new Promise((r) => setTimeout(r, 700)); // past the first retry's delay
    expect(doc.calls).toHaveLength(1);
  });

  it('continues a map it was seeded with: later seqs, and a removal of a key it did not write this run', async () => {
    const doc = new SlowDoc();
    const far = (Date.now() + 3_600_000) * 1000; // an earlier run whose clock was ahead
    doc.map.apply({ seq: far, entries: [['vm/old', far, { phase: 'Running' }]] });
    const w = new StatusWriter(doc, 'n1');
    w.seed(doc.map.entries(), doc.map.seq);
    await w.remove('vm/old');
    expect(doc.map.get('vm/old')).toBeUndefined();
    await w.set('vm/new', 1);
    expect(doc.map.get('vm/new')).toBe(1);
  });
});
