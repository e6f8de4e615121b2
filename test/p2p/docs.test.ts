import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterDocPublisher, ClusterDocView, ReplicatedDoc, StatusView, StatusWriter, type DocEvent } from '../../src/p2p/index.js';
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

  it('keeps the newest log index when two leaders published, whatever their clocks say', async () => {
    const doc = await ReplicatedDoc.create(a.iroh);
    const writeTicket = await doc.ticket('Write');
    const docB = await ReplicatedDoc.join(b.iroh, writeTicket);
    // b was leader at index 10 and published later (by wall clock) than a's publish at index 12.
    await new ClusterDocPublisher(doc).publish(new Map([['k', 'from-a@12']]), 12);
    await new ClusterDocPublisher(docB).publish(new Map([['k', 'from-b@10']]), 10);
    const view = new ClusterDocView(doc);
    await waitFor(async () => (await doc.list('k')).length > 0 && (await view.load(), view.rev >= 12), 10_000, 'entries');
    expect(view.get('k')).toBe('from-a@12');
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
    // Live sync is gossip: a message lost while the swarm forms is recovered by the next sync,
    // which is what a node's periodic anti-entropy does (NodeDocs); here, a syncs now and then.
    let lastSync = 0;
    await waitFor(async () => {
      if (Date.now() - lastSync > 2000) {
        lastSync = Date.now();
        await doc.startSync([b, c].map((n) => ({ nodeId: n.nodeId, addresses: n.addresses })));
      }
      return view!.get(c.nodeId, 'node') !== undefined && view!.get(b.nodeId, 'node') !== undefined;
    }, 10_000, 'honest entries');
    await view.load();
    expect(view.get(b.nodeId, 'vm/web-1')).toBeUndefined();
    expect(view.list(b.nodeId)).toEqual([{ key: 'node', value: { ready: true, heartbeat: 1 } }]);
    expect(view.nodes()).toEqual([b.nodeId, c.nodeId].sort());
    expect(view.forged).toBeGreaterThanOrEqual(2);
  });
});
