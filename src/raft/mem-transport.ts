import { SnapshotAssembler, SNAPSHOT_CHUNK_BYTES, splitSnapshot } from './snapshot-transfer.js';
import type { RaftPeer, Transport } from './transport.js';

// An in-memory network for tests of the Raft node: instant delivery between nodes in one process,
// with the ability to cut a node off (both directions) to model a partition or a dead peer.
// Snapshots travel as the Iroh transport sends them: in chunks on a stream of their own (each chunk
// a separate delivery, so ordinary messages pass in between), assembled and checked before the
// receiver sees them, with the outcome reported to the sender.

export interface MemNetworkOptions {
  /** Bytes per snapshot chunk. Default 1 MiB. */
  snapshotChunkBytes?: number;
  /**
   * Sees every snapshot chunk before it is delivered; returning false breaks that transfer's
   * stream there (the receiver drops what it assembled, the sender learns the transfer failed).
   */
  onSnapshotChunk?: (c: { from: string; to: string; transfer: number; chunk: number; chunks: number }) => boolean | void;
}

export interface MemSnapshotStats {
  started: number;
  completed: number;
  failed: number;
  chunks: number;
}

export class MemNetwork {
  private readonly nodes = new Map<string, MemTransport>();
  private readonly cut = new Set<string>();
  private transfers = 0;
  readonly snapshots: MemSnapshotStats = { started: 0, completed: 0, failed: 0, chunks: 0 };

  constructor(readonly opts: MemNetworkOptions = {}) {}

  transport(id: string): MemTransport {
    const t = new MemTransport(id, this);
    this.nodes.set(id, t);
    return t;
  }

  /** Messages to and from `id` are lost until heal(). */
  isolate(id: string): void {
    this.cut.add(id);
  }

  heal(id: string): void {
    this.cut.delete(id);
  }

  private reachable(from: string, to: string): MemTransport | undefined {
    if (this.cut.has(from) || this.cut.has(to)) return undefined;
    const t = this.nodes.get(to);
    return t && !t.closed ? t : undefined;
  }

  deliver(from: string, to: string, msgs: Uint8Array[]): void {
    const t = this.reachable(from, to);
    if (!t) {
      const sender = this.nodes.get(from);
      if (sender) setImmediate(() => sender.unreachable(to));
      return;
    }
    // Asynchronous, as a real network is: never re-enter the sender's loop.
    setImmediate(() => {
      if (this.cut.has(from) || this.cut.has(to) || t.closed) return;
      for (const m of msgs) t.handler(from, m);
    });
  }

  /** One snapshot on a stream of its own: a chunk per turn of the event loop. */
  deliverSnapshot(from: string, to: string, message: Uint8Array): Promise<boolean> {
    const transfer = ++this.transfers;
    this.snapshots.started++;
    const { header, chunks } = splitSnapshot(message, this.opts.snapshotChunkBytes ?? SNAPSHOT_CHUNK_BYTES);
    const asm = new SnapshotAssembler(header);
    return new Promise<boolean>((resolve) => {
      const end = (ok: boolean) => {
        if (ok) this.snapshots.completed++;
        else this.snapshots.failed++;
        resolve(ok);
      };
      let i = 0;
      const step = () => {
        const t = this.reachable(from, to);
        if (!t || this.nodes.get(from)?.closed) return end(false);
        if (this.opts.onSnapshotChunk?.({ from, to, transfer, chunk: i, chunks: chunks.length }) === false) return end(false);
        this.snapshots.chunks++;
        // A copy, as a network makes: the receiver must not share the sender's buffer.
        if (!asm.push(Uint8Array.from(chunks[i++]!))) return void setImmediate(step);
        let whole: Uint8Array;
        try {
          whole = asm.message();
        } catch {
          return end(false);
        }
        t.handler(from, whole);
        end(true);
      };
      setImmediate(step);
    });
  }
}

export class MemTransport implements Transport {
  handler: (from: string, message: Uint8Array) => void = () => {};
  private unreachableHandler: (peer: string) => void = () => {};
  closed = false;

  constructor(
    private readonly id: string,
    private readonly net: MemNetwork,
  ) {}

  send(to: string, messages: Uint8Array[]): void {
    if (!this.closed) this.net.deliver(this.id, to, messages);
  }

  sendSnapshot(to: string, message: Uint8Array): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    return this.net.deliverSnapshot(this.id, to, message);
  }

  onReceive(handler: (from: string, message: Uint8Array) => void): void {
    this.handler = handler;
  }

  onUnreachable(handler: (peer: string) => void): void {
    this.unreachableHandler = handler;
  }

  /** The network could not deliver to `peer` (called by MemNetwork). */
  unreachable(peer: string): void {
    if (!this.closed) this.unreachableHandler(peer);
  }

  setPeers(_peers: RaftPeer[]): void {}

  async close(): Promise<void> {
    this.closed = true;
  }
}
