import type { RaftPeer, Transport } from './transport.js';

// An in-memory network for tests of the Raft node: instant delivery between nodes in one process,
// with the ability to cut a node off (both directions) to model a partition or a dead peer.

export class MemNetwork {
  private readonly nodes = new Map<string, MemTransport>();
  private readonly cut = new Set<string>();

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

  deliver(from: string, to: string, msgs: Uint8Array[]): void {
    if (this.cut.has(from) || this.cut.has(to)) return;
    const t = this.nodes.get(to);
    if (!t || t.closed) return;
    // Asynchronous, as a real network is: never re-enter the sender's loop.
    setImmediate(() => {
      if (this.cut.has(from) || this.cut.has(to) || t.closed) return;
      for (const m of msgs) t.handler(from, m);
    });
  }
}

export class MemTransport implements Transport {
  handler: (from: string, message: Uint8Array) => void = () => {};
  closed = false;

  constructor(
    private readonly id: string,
    private readonly net: MemNetwork,
  ) {}

  send(to: string, messages: Uint8Array[]): void {
    if (!this.closed) this.net.deliver(this.id, to, messages);
  }

  onReceive(handler: (from: string, message: Uint8Array) => void): void {
    this.handler = handler;
  }

  setPeers(_peers: RaftPeer[]): void {}

  async close(): Promise<void> {
    this.closed = true;
  }
}
