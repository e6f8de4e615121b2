import type { Connection, Endpoint } from '@number0/iroh';
import type { RaftPeer, Transport } from '../raft/index.js';
import { FrameWriter, readFrames } from './framing.js';
import type { P2PMetrics } from './metrics.js';
import { connectWithTimeout } from './peers.js';
import { ALPN, CLOSE, type ProtocolRouter } from './protocols.js';

// Raft over Iroh QUIC on ALPN blixard/raft/1. Each node keeps one long-lived outgoing connection
// per peer with one stream, and writes frames to it in batches (FrameWriter): messages queued
// while a write is in flight share the next one. A broken connection drops what was queued (Raft
// retransmits) and is dialled again with backoff. Only current members may connect (the router's
// allowlist for this ALPN).

/** Messages kept while a connection is being made; past this the oldest go (Raft resends). */
const MAX_QUEUED = 4096;

interface Link {
  peer: RaftPeer;
  queue: Uint8Array[];
  writer: FrameWriter | null;
  conn: Connection | null;
  dialing: boolean;
  failures: number;
  retryAt: number;
}

export class IrohRaftTransport implements Transport {
  private readonly links = new Map<string, Link>();
  /** Connections peers opened to us: a way back to a peer whose address we do not know (yet). */
  private readonly inbound = new Map<string, Connection>();
  private handler: (from: string, message: Uint8Array) => void = () => {};
  private closed = false;

  constructor(
    private readonly endpoint: () => Endpoint,
    router: ProtocolRouter,
    private readonly opts: { connectTimeoutMs?: number; metrics?: P2PMetrics; random?: () => number } = {},
  ) {
    router.handle(ALPN.raft, async (conn, remote) => {
      this.inbound.set(remote, conn);
      // A peer that connects anew has likely restarted: our old connection to it may be dead
      // without knowing it yet (QUIC notices only at its idle timeout). Start over on this one.
      const link = this.links.get(remote);
      if (link?.conn && link.conn !== conn) {
        this.drop(link);
        link.retryAt = 0;
      }
      void conn.closed().then(() => {
        if (this.inbound.get(remote) === conn) this.inbound.delete(remote);
      });
      await this.serve(conn, remote);
    });
  }

  /**
   * Reads every stream the peer opens on a connection, whichever side dialled it: a peer may
   * answer over a connection we opened (when it cannot dial us), and we over one it opened.
   */
  private async serve(conn: Connection, remote: string): Promise<void> {
    for (;;) {
      let bi;
      try {
        bi = await conn.acceptBi();
      } catch {
        return; // closed
      }
      void (async () => {
        const counter = { bytes: 0 };
        let reported = 0;
        let reportedAt = Date.now();
        try {
          for await (const frame of readFrames(bi.recv, counter)) {
            this.handler(remote, frame);
            // Counted in batches (a counter update per frame costs at a million frames a second),
            // but at least every second, so that a quiet stream shows up too.
            if (counter.bytes - reported > 65536 || Date.now() - reportedAt > 1000) {
              this.opts.metrics?.bytes.inc({ protocol: ALPN.raft, direction: 'received' }, counter.bytes - reported);
              reported = counter.bytes;
              reportedAt = Date.now();
            }
          }
        } catch {
          // the stream broke; Raft resends what mattered
        }
        this.opts.metrics?.bytes.inc({ protocol: ALPN.raft, direction: 'received' }, counter.bytes - reported);
      })();
    }
  }

  onReceive(handler: (from: string, message: Uint8Array) => void): void {
    this.handler = handler;
  }

  setPeers(peers: RaftPeer[]): void {
    const want = new Map(peers.map((p) => [p.nodeId, p]));
    for (const [id, link] of this.links) {
      if (!want.has(id)) {
        this.drop(link);
        this.links.delete(id);
      }
    }
    for (const p of peers) {
      const link = this.links.get(p.nodeId);
      if (!link) this.links.set(p.nodeId, { peer: p, queue: [], writer: null, conn: null, dialing: false, failures: 0, retryAt: 0 });
      else if (link.peer.addresses.join() !== p.addresses.join()) {
        link.peer = p;
        this.drop(link);
        link.retryAt = 0;
      }
    }
  }

  send(to: string, messages: Uint8Array[]): void {
    if (this.closed) return;
    let link = this.links.get(to);
    if (!link && this.inbound.has(to)) {
      // A node that learns its peers from the leader's first messages (a new learner) answers
      // over the connection the leader opened.
      link = { peer: { nodeId: to, addresses: [] }, queue: [], writer: null, conn: null, dialing: false, failures: 0, retryAt: 0 };
      this.links.set(to, link);
    }
    if (!link) return;
    if (!link.writer) {
      link.queue.push(...messages);
      if (link.queue.length > MAX_QUEUED) link.queue.splice(0, link.queue.length - MAX_QUEUED);
      this.dial(link);
      return;
    }
    this.write(link, messages);
  }

  private write(link: Link, messages: Uint8Array[]): void {
    if (messages.length === 0) return;
    let bytes = 0;
    for (const m of messages) bytes += m.length + 4;
    link.writer!.writeMany(messages).catch(() => this.drop(link));
    this.opts.metrics?.bytes.inc({ protocol: ALPN.raft, direction: 'sent' }, bytes);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const link of this.links.values()) this.drop(link);
    this.links.clear();
  }

  private dial(link: Link): void {
    if (link.dialing || Date.now() < link.retryAt || this.closed) return;
    link.dialing = true;
    void (async () => {
      try {
        // A peer that is connected to us is reachable through that connection, whatever its
        // addresses say (a restarted peer may have new ones that we learn only later).
        const back = this.inbound.get(link.peer.nodeId);
        const conn = back ?? (await connectWithTimeout(this.endpoint(), link.peer, ALPN.raft, this.opts.connectTimeoutMs ?? 2000, `raft connect to ${link.peer.nodeId.slice(0, 10)}`));
        if (!back) void this.serve(conn, link.peer.nodeId);
        const bi = await conn.openBi();
        if (this.closed || this.links.get(link.peer.nodeId) !== link) {
          conn.close(CLOSE.shutdown, Buffer.from('closed'));
          return;
        }
        link.conn = conn;
        link.writer = new FrameWriter(bi.send);
        link.failures = 0;
        const queued = link.queue;
        link.queue = [];
        this.write(link, queued);
        // When the peer goes away, the connection closes: dial again on the next send.
        void conn.closed().then(() => {
          if (link.conn === conn) this.drop(link);
        });
      } catch {
        link.failures++;
        const cap = Math.min(5000, 100 * 2 ** Math.min(link.failures, 10));
        link.retryAt = Date.now() + cap / 2 + (this.opts.random ?? Math.random)() * (cap / 2);
        link.queue = []; // stale by the time a connection exists; Raft will send what matters again
      } finally {
        link.dialing = false;
      }
    })();
  }

  private drop(link: Link): void {
    const conn = link.conn;
    link.conn = null;
    link.writer = null;
    if (conn && this.inbound.get(link.peer.nodeId) === conn) return; // the peer's connection, not ours to close
    try {
      conn?.close(CLOSE.shutdown, Buffer.from('reset'));
    } catch {
      // already closed
    }
  }
}
