import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IrohRaftTransport } from '../../src/p2p/index.js';
import { startTestNode, waitFor, type TestNode } from '../helpers/iroh.js';

// Raft's Iroh transport between two real nodes: ordered, batched delivery; members only.

let a: TestNode, b: TestNode, stranger: TestNode;
beforeAll(async () => {
  [a, b, stranger] = await Promise.all([startTestNode(), startTestNode(), startTestNode()]);
  a.allow.add(b.nodeId);
  b.allow.add(a.nodeId);
});
afterAll(async () => {
  await Promise.all([a, b, stranger].map((n) => n?.iroh.node.shutdown().catch(() => {})));
});

describe('IrohRaftTransport', () => {
  it('delivers messages in order, in batches; what is sent while dialling waits for the connection', async () => {
    const ta = new IrohRaftTransport(() => a.iroh.node.endpoint(), a.router);
    const tb = new IrohRaftTransport(() => b.iroh.node.endpoint(), b.router);
    ta.setPeers([{ nodeId: b.nodeId, addresses: b.addresses }]);
    const got: number[] = [];
    const from = new Set<string>();
    tb.onReceive((f, m) => {
      from.add(f);
      got.push(Buffer.from(m).readUInt32BE(0));
    });
    // Sent before any connection exists: queued, then delivered once connected.
    const hello = Buffer.alloc(4);
    hello.writeUInt32BE(0xffffffff, 0);
    ta.send(b.nodeId, [hello, hello]);
    await waitFor(() => got.length === 2, 10_000, 'the messages sent while dialling');
    got.length = 0;
    const N = 100_000;
    const t0 = performance.now();
    for (let i = 0; i < N; i += 100) {
      const batch = Array.from({ length: 100 }, (_, j) => {
        const m = Buffer.alloc(64);
        m.writeUInt32BE(i + j, 0);
        return m;
      });
      ta.send(b.nodeId, batch);
      if (i % 10_000 === 0) await new Promise((r) => setImmediate(r));
    }
    await waitFor(() => got.length === N, 30_000, `${N} messages`);
    const secs = (performance.now() - t0) / 1000;
    expect(got.every((v, i) => v === i)).toBe(true);
    expect([...from]).toEqual([a.nodeId]);
    console.log(`raft transport: ${N} x 64 B in ${secs.toFixed(2)} s = ${Math.round(N / secs)} msg/s`);
    await ta.close();
    await tb.close();
  });

  it('is refused to a node that is not a member', async () => {
    const ts = new IrohRaftTransport(() => stranger.iroh.node.endpoint(), stranger.router);
    ts.setPeers([{ nodeId: a.nodeId, addresses: a.addresses }]);
    ts.send(a.nodeId, [Buffer.from('vote for me')]);
    await waitFor(() => a.refused.some((r) => r.remote === stranger.nodeId && r.alpn === 'blixard/raft/1'), 10_000, 'refusal');
    await ts.close();
  });
});
