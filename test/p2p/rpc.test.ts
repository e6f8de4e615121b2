import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcClient, serveRpc } from '../../src/p2p/index.js';
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

  it('gives a node that is not admitted nothing but a refusal', async () => {
    const client = new RpcClient(() => stranger.iroh.node.endpoint(), { callTimeoutMs: 5000 });
    await expect(client.call({ nodeId: a.nodeId, addresses: a.addresses }, { method: 'GET', path: '/v1/status' })).rejects.toThrow();
    expect(a.refused.some((r) => r.remote === stranger.nodeId && r.alpn === 'blixard/api/1')).toBe(true);
    client.close();
  });
});
