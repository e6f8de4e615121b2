import { afterAll, describe, expect, it } from 'vitest';
import { ALPN, CLOSE, PeerManager } from '../../src/p2p/index.js';
import { startTestNode, waitFor, type TestNode } from '../helpers/iroh.js';

// Peer connections between real Iroh nodes on loopback: admitted peers connect and report health;
// others are refused on Blixard ALPNs; a peer that dies and comes back is reconnected by itself.

const nodes: TestNode[] = [];
const managers: PeerManager[] = [];
afterAll(async () => {
  for (const m of managers) m.stop();
  await Promise.all(nodes.map((n) => n.iroh.node.shutdown().catch(() => {})));
});

function manage(n: TestNode, peers: TestNode[]) {
  const m = new PeerManager({ endpoint: () => n.iroh.node.endpoint(), router: n.router, pingIntervalMs: 100, deadAfterMs: 800, connectTimeoutMs: 1000, backoff: { baseMs: 50, maxMs: 400 } });
  m.setPeers(peers.map((p) => ({ nodeId: p.nodeId, name: p === nodes[0] ? 'a' : 'b', addresses: p.addresses })));
  managers.push(m);
  return m;
}

describe('PeerManager', () => {
  it('connects admitted peers, measures RTT, refuses strangers, and heals after a peer restarts', async () => {
    const [a, b, stranger] = await Promise.all([startTestNode(), startTestNode(), startTestNode()]);
    nodes.push(a, b, stranger);
    a.allow.add(b.nodeId);
    b.allow.add(a.nodeId);
    const ma = manage(a, [b]);
    const mb = manage(b, [a]);
    await waitFor(() => ma.get(b.nodeId)!.connected && mb.get(a.nodeId)!.connected, 10_000, 'both sides connected');
    await waitFor(() => ma.get(b.nodeId)!.rttMs !== null, 5_000, 'an RTT sample');
    expect(ma.get(b.nodeId)!.rttMs!).toBeLessThan(100);
    expect(ma.get(b.nodeId)!.lastSeen).not.toBeNull();

    // A stranger is refused on every Blixard ALPN, before any handler runs.
    for (const alpn of Object.values(ALPN)) {
      const conn = await stranger.iroh.node.endpoint().connect({ nodeId: a.nodeId, addresses: a.addresses }, Buffer.from(alpn));
      const reason = await conn.closed();
      expect(reason).toContain(String(CLOSE.notAdmitted));
    }
    expect(a.refused.filter((r) => r.remote === stranger.nodeId).map((r) => r.alpn).sort()).toEqual(Object.values(ALPN).sort());

    // Kill b; a notices; b comes back (same key, same port); a reconnects without being told.
    await b.iroh.node.shutdown();
    mb.stop();
    await waitFor(() => !ma.get(b.nodeId)!.connected, 5_000, 'a to notice b is gone');
    const b2 = await startTestNode({ secretKey: b.secretKey, port: b.port, allow: [a.nodeId] });
    nodes.push(b2);
    expect(b2.nodeId).toBe(b.nodeId);
    manage(b2, [a]);
    await waitFor(() => ma.get(b.nodeId)!.connected, 15_000, 'a to reconnect to the restarted b');
    expect(ma.get(b.nodeId)!.connects).toBeGreaterThanOrEqual(2);
  });

  it('a peer that reaches us wakes our session to it out of its backoff', async () => {
    const [a, b] = await Promise.all([startTestNode(), startTestNode()]);
    nodes.push(a, b);
    a.allow.add(b.nodeId);
    b.allow.add(a.nodeId);
    // a dials b before b serves pings: refused, and a's next try is 30 s or more away.
    const ma = new PeerManager({ endpoint: () => a.iroh.node.endpoint(), router: a.router, pingIntervalMs: 100, connectTimeoutMs: 3000, backoff: { baseMs: 60_000, maxMs: 60_000 } });
    managers.push(ma);
    ma.setPeers([{ nodeId: b.nodeId, name: 'b', addresses: b.addresses }]);
    await waitFor(() => ma.get(b.nodeId)!.lastError !== null, 10_000, "a's first dial to fail");
    // b starts pinging a: a answers, and dials b again at once (3 s to connect: a loaded CI
    // machine once took more than 1 s for the handshake, and each miss meant 30 s more).
    const t0 = Date.now();
    manage(b, [a]);
    await waitFor(() => ma.get(b.nodeId)!.connected, 10_000, 'a to connect to b');
    expect(Date.now() - t0).toBeLessThan(5_000);
  });
});
