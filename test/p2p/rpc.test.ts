import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALPN, FrameWriter, readFrames, RpcClient, serveRpc } from '../../src/p2p/index.js';
import { startTestNode, type TestNode } from '../helpers/iroh.js';

// Calls between nodes on blixard/api/1 (what forwarding to the leader and joining use).

let a: TestNode, b: TestNode, stranger: TestNode;
beforeAll(async () => {
  [a, b, stranger] = await Promise.all([startTestNode(), startTestNode(), startTestNode()]);
  a.allow.add(b.nodeId);
  serveRpc(a.router, async (req, remote) => ({ status: 200, body: { echo: req.body, path: req.path, from: remote } }));
});
afterAll(async () => {
  await Promise.all([a, b, stranger].map((n) => n?.iroh.node.shutdown().catch(() => {})));
});

describe('rpc', () => {
  it('answers many concurrent calls on one connection, and knows who called', async () => {
    const client = new RpcClient(() => b.iroh.node.endpoint());
    const to = { nodeId: a.nodeId, addresses: a.addresses };
    const t0 = performance.now();
    const res = await Promise.all(Array.from({ length: 200 }, (_, i) => client.call(to, { method: 'POST', path: '/v1/apply', body: { i } })));
    const ms = performance.now() - t0;
    expect(res.every((r, i) => r.status === 200 && (r.body as { echo: { i: number } }).echo.i === i)).toBe(true);
    expect((res[0]!.body as { from: string }).from).toBe(b.nodeId);
    const t1 = performance.now();
    for (let i = 0; i < 50; i++) await client.call(to, { method: 'GET', path: '/v1/status' });
    console.log(`rpc: 200 concurrent in ${Math.round(ms)} ms; sequential round trip ${((performance.now() - t1) / 50).toFixed(2)} ms`);
    client.close();
  });

  it('never sends a call again once it was written: the peer may have taken it before its connection died', async () => {
    // A peer that takes a call and then drops the connection, as a node that dies with it does.
    const c = await startTestNode();
    try {
      c.allow.add(b.nodeId);
      const taken: string[] = [];
      c.router.handle(ALPN.api, async (conn) => {
        for (;;) {
          let bi;
          try {
            bi = await conn.acceptBi();
          } catch {
            return;
          }
          for await (const frame of readFrames(bi.recv)) {
            const req = JSON.parse(frame.toString('utf8')) as { path: string };
            taken.push(req.path);
            if (req.path === '/warm') {
              const out = new FrameWriter(bi.send);
              await out.write(Buffer.from(JSON.stringify({ status: 200, body: null })));
              await out.finish();
            } else conn.close(0n, Buffer.from('died with the call'));
            break;
          }
        }
      });
      const client = new RpcClient(() => b.iroh.node.endpoint(), { callTimeoutMs: 5000 });
      const to = { nodeId: c.nodeId, addresses: c.addresses };
      await client.call(to, { method: 'GET', path: '/warm' }); // the connection is cached now
      await expect(client.call(to, { method: 'POST', path: '/v1/apply', body: {} })).rejects.toThrow();
      expect(taken).toEqual(['/warm', '/v1/apply']);
      client.close();
    } finally {
      await c.iroh.node.shutdown().catch(() => {});
    }
  });

  it('gives a node that is not admitted nothing but a refusal', async () => {
    const client = new RpcClient(() => stranger.iroh.node.endpoint(), { callTimeoutMs: 5000 });
    await expect(client.call({ nodeId: a.nodeId, addresses: a.addresses }, { method: 'GET', path: '/v1/status' })).rejects.toThrow();
    expect(a.refused.some((r) => r.remote === stranger.nodeId && r.alpn === 'blixard/api/1')).toBe(true);
    client.close();
  });
});
