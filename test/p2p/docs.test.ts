import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReplicatedDoc, type DocEvent } from '../../src/p2p/index.js';
import { ClusterDocPublisher, ClusterDocView, StatusView, StatusWriter } from '../../src/sync/index.js';
import { startTestNode, waitFor, type TestNode } from '../helpers/iroh.js';

// The cluster and status documents between three real Iroh nodes on loopback.

let a: TestNode, b: TestNode, c: TestNode;
beforeAll(async () => {
  [a, b, c] = await Promise.all([startTestNode(), startTestNode(), startTestNode()]);
});
afterAll(async () => {
  await Promise.all([a, b, c].map((n) => n?.iroh.node.shutdown().catch(() => {})));
});

describe('cluster document', () => {
  it('carries what the leader publishes to every node, with removals, and to a node that joins late', async () => {
    const doc = await ReplicatedDoc.create(a.iroh);
    const pub = new ClusterDocPublisher(doc);
    const readTicket = await doc.ticket('Read');
    const views: ClusterDocView[] = [];
    const join = async (n: TestNode) => {
      let view: ClusterDocView | undefined;
      const early: DocEvent[] = [];
      const d = await ReplicatedDoc.join(n.iroh, readTicket, (e) => (view ? view.event(e) : early.push(e)));
      view = new ClusterDocView(d);
      for (const e of early) view.event(e);
      await view.load();
      views.push(view);
      return view;
    };
    await pub.publish(new Map([['desired/VirtualMachine/web-1', { spec: { image: 'tiny' } }], ['placement/web-1', { nodeId: 'x' }]]), 5);
    const vb = await join(b);
    await waitFor(() => vb.get('desired/VirtualMachine/web-1') !== undefined, 10_000, 'b to see web-1');
    expect(vb.list('placement/')).toEqual([{ key: 'placement/web-1', value: { nodeId: 'x' } }]);

    // A change and a removal travel too, and only as far as the doc says.
    const t0 = performance.now();
    await pub.publish(new Map([['desired/VirtualMachine/web-1', { spec: { image: 'tiny', vcpus: 2 } }]]), 6);
    await waitFor(() => vb.get('placement/web-1') === undefined && vb.rev === 6, 10_000, 'b to see the removal');
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(vb.get('desired/VirtualMachine/web-1')).toEqual({ spec: { image: 'tiny', vcpus: 2 } });

    // c was not there for any of it, and catches up on everything when it joins.
    const vc = await join(c);
    await waitFor(() => vc.rev === 6, 10_000, 'c to catch up');
    expect(vc.list('')).toEqual(vb.list(''));

    // A reader cannot write: the Read ticket carries no namespace secret.
    const readOnly = await ReplicatedDoc.join(b.iroh, readTicket);
    await expect(readOnly.set('desired/VirtualMachine/evil', { x: 1 })).rejects.toThrow();
  });

  it('keeps entries whose keys are prefixes of one another (Iroh prunes older entries under a written key)', async () => {
    const doc = await ReplicatedDoc.create(a.iroh);
    const d2 = await ReplicatedDoc.join(b.iroh, await doc.ticket('Read'));
    await doc.set('vm/web-1', 'one');
    await doc.set('vm/web-12', 'twelve');
    await doc.set('vm/web', 'web');
    await doc.set('vm/web-1', 'one again');
    expect((await doc.list('vm/')).map((e) => [e.key, e.value])).toEqual([
      ['vm/web', 'web'],
      ['vm/web-1', 'one again'],
      ['vm/web-12', 'twelve'],
    ]);
    expect((await doc.get('vm/web'))?.value).toBe('web');
    expect((await doc.getExact(doc.author, 'vm/web-1'))?.value).toBe('one again');
    await waitFor(async () => (await d2.list('vm/')).length === 3, 10_000, 'b to hold all three');
    expect((await d2.list('vm/')).map((e) => e.key)).toEqual(['vm/web', 'vm/web-1', 'vm/web-12']);
  });

  it('fetches content Iroh left missing (here: a download policy that fetches nothing) from the given providers', async () => {
    const doc = await ReplicatedDoc.create(a.iroh);
    const events: DocEvent[] = [];
    const d2 = await ReplicatedDoc.join(b.iroh, await doc.ticket('Read'), (e) => events.push(e));
    const { DownloadPolicy } = await import('@number0/iroh');
    await (d2 as unknown as { doc: import('@number0/iroh').Doc }).doc.setDownloadPolicy(DownloadPolicy.nothing());
    await doc.set('status/x/vm/web', { phase: 'Running' });
    await waitFor(() => events.some((e) => e.type === 'insert' && e.key === 'status/x/vm/web'), 10_000, 'the entry at b');
    expect(await d2.getExact(doc.author, 'status/x/vm/web')).toBeUndefined(); // entry here, content not
    expect(d2.missingContent().map((m) => m.key)).toEqual(['status/x/vm/web']);
    expect(await d2.fetchMissing(() => [], 0)).toEqual([]); // nobody to ask
    expect(await d2.fetchMissing(() => [{ nodeId: a.nodeId, addresses: a.addresses }], 0)).toEqual(['status/x/vm/web']);
    expect((await d2.getExact(doc.author, 'status/x/vm/web'))?.value).toEqual({ phase: 'Running' });
    expect(d2.missingContent()).toEqual([]);
    expect(events.some((e) => e.type === 'content-ready')).toBe(true); // subscribers are told
  });

  it('keeps the newest log index when two leaders published, whatever their clocks say', async () => {
    const doc = await ReplicatedDoc.create(a.iroh);
    const writeTicket = await doc.ticket('Write');
    const docB = await ReplicatedDoc.join(b.iroh, writeTicket);
    // b was leader at index 10 and published later (by wall clock) than a's publish at index 12,
    // a snapshot and then a batch.
    const pubA = new ClusterDocPublisher(doc);
    await pubA.publish(new Map([['k', 'from-a@12']]), 12);
    const pubB = new ClusterDocPublisher(docB);
    await pubB.publish(new Map([['k', 'from-b@10']]), 10);
    await pubB.update(new Map([['k', 'from-b@11'], ['gone-by-12', 'b@11']]), 11);
    await waitFor(async () => (await doc.list('', { perAuthor: true })).length === 3, 10_000, "b's records at a");
    const view = new ClusterDocView(doc);
    await doc.subscribe((e) => view.event(e));
    await view.load();
    expect(view.rev).toBe(12);
    expect(view.list('')).toEqual([{ key: 'k', value: 'from-a@12' }]);
    // a goes on from its own index; b's records stay beneath it.
    await pubA.update(new Map([['k', 'from-a@13']]), 13);
    await waitFor(() => view.get('k') === 'from-a@13', 10_000, 'the next batch');
  });
});

describe('reading an entry an event described', () => {
  it('reads it by its content hash, its own writes from memory, and looks the entry up when that content is gone', async () => {
    const doc = await ReplicatedDoc.create(a.iroh);
    const inserts: Extract<DocEvent, { type: 'insert' }>[] = [];
    await doc.subscribe((e) => e.type === 'insert' && inserts.push(e));
    // Iroh arms a subscription after subscribe() resolves: a write right after it may come before
    // (measured: an immediate insert missed 3 times in 40 by a doc's second subscription; 5 of 12
    // runs of this file failed here). A probe seen proves the subscription live.
    for (let n = 0; !inserts.some((e) => e.key === 'probe'); n++) {
      await doc.set('probe', n);
      await waitFor(async () => inserts.some((e) => e.key === 'probe'), 500, 'the probe').catch(() => {});
    }
    await doc.set('k', { v: 1 });
    await waitFor(async () => inserts.some((e) => e.key === 'k'), 5_000, 'the insert event');
    const first = inserts.find((e) => e.key === 'k')!;
    const hint = { hash: first.hash!, timestamp: first.timestamp!, len: first.len! };
    // An own write: the value comes back as written (a copy), with the event's identity.
    expect(await doc.entryAt(doc.author, 'k', hint)).toMatchObject({ key: 'k', value: { v: 1 }, hash: hint.hash, timestamp: hint.timestamp });
    // Read again (no longer kept in memory): from the content store by hash.
    expect((await doc.entryAt(doc.author, 'k', hint))?.value).toEqual({ v: 1 });
    // A tombstone is nothing; content that is not here (a hash nobody wrote) means a lookup,
    // which finds the author's current entry.
    expect(await doc.entryAt(doc.author, 'k', { ...hint, len: 0n })).toBeUndefined();
    await doc.set('k', { v: 2 });
    const gone = { hash: 'a'.repeat(52), timestamp: hint.timestamp, len: 10n };
    expect((await doc.entryAt(doc.author, 'k', gone))?.value).toEqual({ v: 2 });
  });
});

describe('large values', () => {
  it('writes and reads back a value of megabytes (deflated off the event loop), at the writer and at a reader', async () => {
    const doc = await ReplicatedDoc.create(a.iroh);
    const d2 = await ReplicatedDoc.join(b.iroh, await doc.ticket('Read'));
    const big = { entries: Array.from({ length: 20_000 }, (_, i) => [`desired/VirtualMachine/vm-${i}`, i, { spec: { image: 'tiny', memoryMiB: 64 + (i % 7) } }]) };
    expect(JSON.stringify(big).length).toBeGreaterThan(1_000_000);
    await doc.set('snapshot', big);
    expect((await doc.getExact(doc.author, 'snapshot'))?.value).toEqual(big);
    await waitFor(async () => (await d2.getExact(doc.author, 'snapshot')) !== undefined, 10_000, 'the reader to have it');
    expect((await d2.getExact(doc.author, 'snapshot'))?.value).toEqual(big);
  });
});

describe('status document', () => {
  it('believes an entry only from the author committed for the node id its key names', async () => {
    const doc = await ReplicatedDoc.create(a.iroh);
    const ticket = await doc.ticket('Write');
    const docB = await ReplicatedDoc.join(b.iroh, ticket);
    const docC = await ReplicatedDoc.join(c.iroh, ticket);
    const authors: Record<string, string> = { [a.nodeId]: doc.author, [b.nodeId]: docB.author, [c.nodeId]: docC.author };
    let view: StatusView | undefined;
    await doc.subscribe((e) => view?.event(e));
    view = new StatusView(doc, (id) => authors[id]);

    await new StatusWriter(docB, b.nodeId).set('node', { ready: true, heartbeat: 1 });
    // c forges an entry under b's prefix, and one under a node id nobody admitted.
    await new StatusWriter(docC, b.nodeId).set('vm/web-1', { phase: 'Running' });
    await new StatusWriter(docC, 'f'.repeat(64)).set('node', { ready: true });
    await new StatusWriter(docC, c.nodeId).set('node', { ready: true, heartbeat: 7 });
    // Iroh fetches an entry's content once, from the peer it came from, and that can fail (a node
    // the receiver has no address for yet): what a node's anti-entropy does (NodeDocs.repair)
    // fetches it from the peers it knows.
    const peers = [b, c].map((n) => ({ nodeId: n.nodeId, addresses: n.addresses }));
    await waitFor(async () => {
      if ((await doc.fetchMissing(() => peers, 0)).length > 0) await view!.load();
      return view!.get(c.nodeId, 'node') !== undefined && view!.get(b.nodeId, 'node') !== undefined;
    }, 10_000, 'honest entries');
    await view.load();
    expect(view.get(b.nodeId, 'vm/web-1')).toBeUndefined();
    expect(view.list(b.nodeId)).toEqual([{ key: 'node', value: { ready: true, heartbeat: 1 } }]);
    expect(view.nodes()).toEqual([b.nodeId, c.nodeId].sort());
    expect(view.forged).toBeGreaterThanOrEqual(2);
  });
});
