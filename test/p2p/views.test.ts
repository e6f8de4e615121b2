import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReplicatedDoc, type DocEvent } from '../../src/p2p/index.js';
import { ClusterDocPublisher, ClusterDocView } from '../../src/sync/index.js';
import { startTestNode, waitFor, type TestNode } from '../helpers/iroh.js';

// A node joining a big cluster document. Iroh reports every entry twice (insert, then
// content-ready); a view that re-read the whole document on each content-ready queued N reads of
// N entries (two minutes of CPU here for 1,000 entries, when every key was an entry of its own).
// The map now travels as a snapshot and batches (batched-map.ts), and the view reads what the
// events name, once each: a 3,000-key map is a handful of entries to read.

let a: TestNode, b: TestNode;
beforeAll(async () => {
  [a, b] = await Promise.all([startTestNode(), startTestNode()]);
});
afterAll(async () => {
  await Promise.all([a, b].map((n) => n?.iroh.node.shutdown().catch(() => {})));
});

describe('ClusterDocView on a big document', () => {
  it('follows a join of a 3,000-key map, and a change right after arrives at once', async () => {
    const doc = await ReplicatedDoc.create(a.iroh);
    const pub = new ClusterDocPublisher(doc);
    const entries = new Map<string, unknown>();
    for (let i = 0; i < 3000; i++) entries.set(`desired/Image/img-${i}`, { spec: { blob: `blake3:${i}`, format: 'raw' } });
    await pub.publish(entries, 1);

    const t0 = performance.now();
    let view: ClusterDocView | undefined;
    const early: DocEvent[] = [];
    const joined = await ReplicatedDoc.join(b.iroh, await doc.ticket('Read'), (e) => (view ? view.event(e) : early.push(e)));
    view = new ClusterDocView(joined);
    for (const e of early) view.event(e);
    await view.load();
    await waitFor(() => view.size === 3000, 30_000, 'all 3,000 entries');
    const ms = performance.now() - t0;
    await view.settled();
    const settledMs = performance.now() - t0;
    const st = view.refreshStats;
    console.log(`3,000 keys: all seen in ${Math.round(ms)} ms, refresh work done at ${Math.round(settledMs)} ms; ${st.drains} drains, ${st.fullReads} whole-document reads asked for`);
    // Whole reads only at load and after the sync, never one per event; events come in batches.
    expect(st.fullReads).toBeLessThanOrEqual(4);
    expect(st.drains).toBeLessThan(3000);
    expect(settledMs).toBeLessThan(15_000);

    // Nothing is queued behind the join: the next change is seen as fast as on a small document.
    entries.set('desired/VirtualMachine/late', { spec: { image: 'tiny' } });
    const t1 = performance.now();
    await pub.publish(entries, 2);
    await waitFor(() => view.get('desired/VirtualMachine/late') !== undefined, 5_000, 'the change after the join');
    expect(performance.now() - t1).toBeLessThan(1_000);
  });
});
