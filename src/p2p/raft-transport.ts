import { constants as bufferConstants } from 'node:buffer';
import type { BiStream, Connection, Endpoint } from '@number0/iroh';
import {
  decodeSnapshotHeader,
  encodeSnapshotHeader,
  SNAPSHOT_ACK_OK,
  SNAPSHOT_ACK_REFUSED,
  SNAPSHOT_CHUNK_BYTES,
  SnapshotAssembler,
  splitSnapshot,
  type RaftPeer,
  type SnapshotHeader,
  type Transport,
} from '../raft/index.js';
import { FrameWriter, MAX_FRAME_BYTES, readFrames } from './framing.js';
import type { P2PMetrics } from './metrics.js';
import { connectWithTimeout } from './peers.js';
import { ALPN, CLOSE, type ProtocolRouter } from './protocols.js';

// Raft over Iroh QUIC on ALPN blixard/raft/1. Each node keeps one long-lived outgoing connection
// per peer with one stream, and writes frames to it in batches (FrameWriter): messages queued
// while a write is in flight share the next one. A broken connection drops what was queued (Raft
// retransmits) and is dialled again with backoff. Only current members may connect (the router's
// allowlist for this ALPN).
//
// Snapshots go on a stream of their own per transfer, on the same connection, at a lower priority
// than the Raft stream: a header frame, the message in chunks (frames of at most
// snapshotChunkBytes, far below the frame limit), then the receiver answers with one ack frame
// once the whole message, checked, went to its node (see raft/snapshot-transfer.ts). So a
// snapshot of any size reaches a follower, and heartbeats and appends never wait behind it.

/** Messages kept while a connection is being made; past this the oldest go (Raft resends). */
const MAX_QUEUED = 4096;

export interface IrohRaftTransportOptions {
  connectTimeoutMs?: number;
  metrics?: P2PMetrics;
  random?: () => number;
  /** Bytes per snapshot chunk. Default 1 MiB. */
  snapshotChunkBytes?: number;
  /**
   * A snapshot transfer that makes no progress (no chunk accepted, no ack) for this long is given
   * up, and the connection it used closed (a stream stuck that long means a wedged connection).
   * Default 15 s.
   */
  snapshotStallMs?: number;
  /** Incoming snapshots larger than this are refused. Default: the largest buffer Node allows. */
  maxSnapshotBytes?: number;
  /** Progress of each incoming snapshot, after every chunk (logs, metrics, tests). */
  onSnapshotChunk?: (from: string, receivedBytes: number, totalBytes: number) => void;
}

interface Link {
  peer: RaftPeer;
  queue: Uint8Array[];
  writer: FrameWriter | null;
  conn: Connection | null;
  dialing: boolean;
  failures: number;
  retryAt: number;
  /** Snapshot transfers waiting for a connection. */
  waiters: { resolve: (c: Connection) => void; reject: (e: Error) => void }[];
}

export interface RaftTransportSnapshotStats {
  sent: number;
  sendFailed: number;
  received: number;
  receiveFailed: number;
  chunksSent: number;
  chunksReceived: number;
}

class Stalled extends Error {}

export class IrohRaftTransport implements Transport {
  private readonly links = new Map<string, Link>();
  /** Connections peers opened to us: a way back to a peer whose address we do not know (yet). */
  private readonly inbound = new Map<string, Connection>();
  /** The snapshot each peer is sending us now; a newer one from the same peer replaces it. */
  private readonly incoming = new Map<string, object>();
  private handler: (from: string, message: Uint8Array) => void = () => {};
  private unreachableHandler: (peer: string) => void = () => {};
  private closed = false;
  readonly snapshotStats: RaftTransportSnapshotStats = { sent: 0, sendFailed: 0, received: 0, receiveFailed: 0, chunksSent: 0, chunksReceived: 0 };

  constructor(
    private readonly endpoint: () => Endpoint,
    router: ProtocolRouter,
    private readonly opts: IrohRaftTransportOptions = {},
  ) {
    const chunk = opts.snapshotChunkBytes ?? SNAPSHOT_CHUNK_BYTES;
    if (!Number.isSafeInteger(chunk) || chunk < 1 || chunk > MAX_FRAME_BYTES) throw new RangeError(`snapshotChunkBytes must be in [1, ${MAX_FRAME_BYTES}], got ${chunk}`);
    router.handle(ALPN.raft, async (conn, remote) => {
      if (this.closed) {
        conn.close(CLOSE.shutdown, Buffer.from('closed'));
        return;
      }
      this.inbound.set(remote, conn);
      // A peer that connects anew has likely restarted: our old connection to it may be dead
      // without knowing it yet (QUIC notices only at its idle timeout). Start over on this one.
      const link = this.links.get(remote);
      if (link) {
        if (link.conn && link.conn !== conn) this.drop(link);
        // And it is up: no need to wait out the backoff of dials that failed while it was down.
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
   * A stream whose first frame is a snapshot header carries one snapshot; any other carries
   * Raft messages.
   */
  private async serve(conn: Connection, remote: string): Promise<void> {
    for (;;) {
      let bi: BiStream;
      try {
        bi = await conn.acceptBi();
      } catch {
        return; // closed
      }
      void (async () => {
        const counter = { bytes: 0 };
        let reported = 0;
        let reportedAt = Date.now();
        const frames = readFrames(bi.recv, counter);
        let first = true;
        try {
          for (;;) {
            const next = await frames.next();
            if (next.done) break;
            const frame = next.value;
            if (first) {
              first = false;
              const header = decodeSnapshotHeader(frame);
              if (header) {
                await this.receiveSnapshot(remote, header, frames, bi);
                void frames.return(undefined).catch(() => {});
                break;
              }
            }
            if (this.closed) break;
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

  /**
   * Assembles one snapshot from the rest of its stream and hands it to the node only once it is
   * whole and intact; then acks. A broken stream, a bad checksum or a newer transfer from the
   * same peer drops what arrived: the follower never sees part of a snapshot.
   */
  private async receiveSnapshot(remote: string, header: SnapshotHeader, frames: AsyncGenerator<Buffer>, bi: BiStream): Promise<void> {
    const me = {};
    this.incoming.set(remote, me);
    const answer = async (ack: number) => {
      const w = new FrameWriter(bi.send);
      await w.write(Buffer.from([ack]));
      await w.finish();
    };
    try {
      let asm: SnapshotAssembler;
      try {
        asm = new SnapshotAssembler(header, this.opts.maxSnapshotBytes ?? bufferConstants.MAX_LENGTH);
      } catch {
        this.snapshotStats.receiveFailed++;
        await answer(SNAPSHOT_ACK_REFUSED).catch(() => {});
        await bi.recv.stop(CLOSE.shutdown).catch(() => {}); // the sender's next write fails at once
        return;
      }
      while (!asm.complete) {
        const next = await frames.next();
        if (next.done) throw new Error(`snapshot stream ended after ${asm.received} of ${header.total} bytes`);
        if (this.closed || this.incoming.get(remote) !== me) throw new Error('snapshot superseded');
        asm.push(next.value);
        this.snapshotStats.chunksReceived++;
        this.opts.onSnapshotChunk?.(remote, asm.received, header.total);
      }
      const whole = asm.message(); // throws on a checksum mismatch
      if (this.closed || this.incoming.get(remote) !== me) throw new Error('snapshot superseded');
      this.handler(remote, whole);
      this.snapshotStats.received++;
    } catch {
      this.snapshotStats.receiveFailed++;
      // No read is pending here, so the stream can be stopped: the sender learns at once.
      await bi.recv.stop(CLOSE.shutdown).catch(() => {});
      return;
    } finally {
      if (this.incoming.get(remote) === me) this.incoming.delete(remote);
    }
    await answer(SNAPSHOT_ACK_OK).catch(() => {});
  }

  onReceive(handler: (from: string, message: Uint8Array) => void): void {
    this.handler = handler;
  }

  onUnreachable(handler: (peer: string) => void): void {
    this.unreachableHandler = handler;
  }

  setPeers(peers: RaftPeer[]): void {
    const want = new Map(peers.map((p) => [p.nodeId, p]));
    for (const [id, link] of this.links) {
      if (!want.has(id)) {
        this.drop(link);
        this.failWaiters(link, new Error('no longer a peer'));
        this.links.delete(id);
      }
    }
    for (const p of peers) {
      const link = this.links.get(p.nodeId);
      if (!link) this.links.set(p.nodeId, newLink(p));
      else if (link.peer.addresses.join() !== p.addresses.join()) {
        link.peer = p;
        this.drop(link);
        link.retryAt = 0;
      }
    }
  }

  private linkFor(to: string): Link | undefined {
    let link = this.links.get(to);
    if (!link && this.inbound.has(to)) {
      // A node that learns its peers from the leader's first messages (a new learner) answers
      // over the connection the leader opened.
      link = newLink({ nodeId: to, addresses: [] });
      this.links.set(to, link);
    }
    return link;
  }

  send(to: string, messages: Uint8Array[]): void {
    if (this.closed) return;
    const link = this.linkFor(to);
    if (!link) return;
    if (!link.writer) {
      link.queue.push(...messages);
      if (link.queue.length > MAX_QUEUED) link.queue.splice(0, link.queue.length - MAX_QUEUED);
      this.dial(link);
      return;
    }
    this.write(link, messages);
  }

  /** See Transport.sendSnapshot: its own stream, in chunks, acked by the receiver. */
  async sendSnapshot(to: string, message: Uint8Array): Promise<boolean> {
    const link = this.closed ? undefined : this.linkFor(to);
    if (!link) return false;
    const stallMs = this.opts.snapshotStallMs ?? 15_000;
    const { header, chunks } = splitSnapshot(message, this.opts.snapshotChunkBytes ?? SNAPSHOT_CHUNK_BYTES);
    let conn: Connection | null = null;
    try {
      conn = await stall(this.connection(link), stallMs);
      const bi = await stall(conn.openBi(), stallMs);
      // Below the Raft stream (priority 0): QUIC sends its data first when both have some.
      await bi.send.setPriority(-1).catch(() => {});
      const w = new FrameWriter(bi.send);
      await stall(w.write(encodeSnapshotHeader(header)), stallMs);
      for (const c of chunks) {
        if (this.closed) throw new Error('transport closed');
        // One chunk at a time: the stream's flow control paces us, and a dead peer shows up
        // as a write that does not finish.
        await stall(w.write(c), stallMs);
        this.snapshotStats.chunksSent++;
        this.opts.metrics?.bytes.inc({ protocol: ALPN.raft, direction: 'sent' }, c.length + 4);
      }
      const acks = readFrames(bi.recv);
      const ack = await stall(acks.next(), stallMs);
      void acks.return(undefined).catch(() => {});
      const ok = !ack.done && ack.value.length === 1 && ack.value[0] === SNAPSHOT_ACK_OK;
      await w.finish().catch(() => {});
      if (ok) this.snapshotStats.sent++;
      else this.snapshotStats.sendFailed++;
      return ok;
    } catch (e) {
      this.snapshotStats.sendFailed++;
      // A stream stuck that long means a wedged connection (and its pending write holds the
      // stream, so resetting only the stream is not possible): start over on a new one.
      if (e instanceof Stalled && conn) {
        if (link.conn === conn) this.drop(link);
        try {
          conn.close(CLOSE.shutdown, Buffer.from('snapshot stalled'));
        } catch {
          // already closed
        }
      }
      return false;
    }
  }

  /**
   * Closes every connection with `peer`, ours and theirs; the next message dials again. (For a
   * peer whose connection is suspect; tests use it to break a transfer.)
   */
  disconnect(peer: string): void {
    const link = this.links.get(peer);
    const theirs = this.inbound.get(peer);
    this.inbound.delete(peer);
    // A snapshot arriving from it is abandoned too: chunks already read off the closed
    // connection must not complete it (and have the sender's ack lost with the connection).
    this.incoming.delete(peer);
    if (link) this.drop(link);
    try {
      theirs?.close(CLOSE.shutdown, Buffer.from('reset'));
    } catch {
      // already closed
    }
  }

  private write(link: Link, messages: Uint8Array[]): void {
    if (messages.length === 0) return;
    let bytes = 0;
    for (const m of messages) bytes += m.length + 4;
    link.writer!.writeMany(messages).catch(() => {
      this.drop(link);
      this.unreachable(link.peer.nodeId);
    });
    this.opts.metrics?.bytes.inc({ protocol: ALPN.raft, direction: 'sent' }, bytes);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const link of this.links.values()) {
      this.drop(link);
      this.failWaiters(link, new Error('transport closed'));
    }
    this.links.clear();
    // Connections peers opened to us would otherwise keep feeding a handler nobody listens to.
    for (const conn of this.inbound.values()) {
      try {
        conn.close(CLOSE.shutdown, Buffer.from('closed'));
      } catch {
        // already closed
      }
    }
    this.inbound.clear();
  }

  private unreachable(peer: string): void {
    if (!this.closed) this.unreachableHandler(peer);
  }

  /** The link's connection, dialling if needed; rejects if the dial fails or is backing off. */
  private connection(link: Link): Promise<Connection> {
    if (link.conn && link.writer) {
      // A connection the peer just closed is noticed by its closed() promise a moment later;
      // a snapshot retried in that moment must dial anew, not fail again on the dead one.
      if (isOpen(link.conn)) return Promise.resolve(link.conn);
      this.drop(link);
    }
    return new Promise<Connection>((resolve, reject) => {
      link.waiters.push({ resolve, reject });
      this.dial(link);
      if (!link.dialing) this.failWaiters(link, new Error(`${link.peer.nodeId.slice(0, 10)} is not reachable now (backing off)`));
    });
  }

  private failWaiters(link: Link, e: Error): void {
    for (const w of link.waiters.splice(0)) w.reject(e);
  }

  private dial(link: Link): void {
    if (link.dialing || Date.now() < link.retryAt || this.closed) return;
    link.dialing = true;
    void (async () => {
      try {
        // A peer that is connected to us is reachable through that connection, whatever its
        // addresses say (a restarted peer may have new ones that we learn only later).
        const inbound = this.inbound.get(link.peer.nodeId);
        const back = inbound && isOpen(inbound) ? inbound : undefined;
        const conn = back ?? (await connectWithTimeout(this.endpoint(), link.peer, ALPN.raft, this.opts.connectTimeoutMs ?? 2000, `raft connect to ${link.peer.nodeId.slice(0, 10)}`));
        if (!back) void this.serve(conn, link.peer.nodeId);
        const bi = await conn.openBi();
        if (this.closed || this.links.get(link.peer.nodeId) !== link) {
          if (!back) conn.close(CLOSE.shutdown, Buffer.from('closed'));
          this.failWaiters(link, new Error('transport closed'));
          return;
        }
        link.conn = conn;
        link.writer = new FrameWriter(bi.send);
        link.failures = 0;
        const queued = link.queue;
        link.queue = [];
        this.write(link, queued);
        for (const w of link.waiters.splice(0)) w.resolve(conn);
        // When the peer goes away, the connection closes: dial again on the next send.
        void conn.closed().then(() => {
          if (link.conn === conn) {
            this.drop(link);
            this.unreachable(link.peer.nodeId);
          }
        });
      } catch (e) {
        link.failures++;
        const cap = Math.min(5000, 100 * 2 ** Math.min(link.failures, 10));
        link.retryAt = Date.now() + cap / 2 + (this.opts.random ?? Math.random)() * (cap / 2);
        link.queue = []; // stale by the time a connection exists; Raft will send what matters again
        this.failWaiters(link, e instanceof Error ? e : new Error(String(e)));
        this.unreachable(link.peer.nodeId);
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

function newLink(peer: RaftPeer): Link {
  return { peer, queue: [], writer: null, conn: null, dialing: false, failures: 0, retryAt: 0, waiters: [] };
}

/** `p`, or a Stalled error if it does not settle within `ms`. */
function stall<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Stalled(`no progress in ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function isOpen(conn: Connection): boolean {
  try {
    return conn.closeReason() === null;
  } catch {
    return false;
  }
}
