import type { DesiredStateStore, PeerSpec } from '../state/index.js';

// Who this node may talk to, and where to reach them: admitted nodes (Peers and joined nodes in the
// store), the members a join told us of (trusted before the log tells us anything), and, while
// this data dir belongs to no cluster yet, the cluster that admits it by a Peer manifest (trust on
// first use: the first leader to replicate to us). Pure: it reads the store and what it is given.

export interface PeerAddr {
  nodeId: string;
  addresses: string[];
}

export interface DirectoryOptions {
  self: string;
  store: DesiredStateStore;
  /** Members a join told us of, and a ticket's leader: trusted before the log says anything. */
  trusted: () => readonly PeerAddr[];
  /** A new data dir started with neither --bootstrap nor --join waits for a Peer manifest. */
  awaitingPeer: boolean;
}

export class Directory {
  constructor(private readonly o: DirectoryOptions) {}

  /** Admitted on Blixard's protocols (SPEC section 7: nobody else is served or believed). */
  admitted(nodeId: string): boolean {
    const { store } = this.o;
    return store.admitted(nodeId) || this.o.trusted().some((t) => t.nodeId === nodeId) || (store.clusterId === null && this.o.awaitingPeer);
  }

  /** Where to reach a node: its record, its Peer manifest, what a join told us. */
  addressesOf(nodeId: string): string[] {
    const { store } = this.o;
    const rec = store.node(nodeId)?.addresses ?? [];
    const peer = store.list('Peer').find((p) => (p.spec as PeerSpec).nodeId === nodeId);
    const told = this.o.trusted().find((t) => t.nodeId === nodeId)?.addresses ?? [];
    return [...new Set([...rec, ...((peer?.spec as PeerSpec | undefined)?.addresses ?? []), ...told])];
  }

  /** A node and its addresses, or undefined when none is known. */
  addrOf(nodeId: string): PeerAddr | undefined {
    const a = this.addressesOf(nodeId);
    return a.length > 0 ? { nodeId, addresses: a } : undefined;
  }

  /** Every other node this one knows of: registered nodes and trusted members. */
  known(): string[] {
    return [...new Set([...this.o.store.listNodes().map((n) => n.nodeId), ...this.o.trusted().map((t) => t.nodeId)])].filter((id) => id !== this.o.self);
  }

  /** The known nodes that have addresses (whom documents sync with). */
  reachable(): PeerAddr[] {
    return this.known().flatMap((id) => this.addrOf(id) ?? []);
  }

  /** The voters, with their addresses (whom a worker asks for a fresh sync). */
  voters(): PeerAddr[] {
    return this.o.store
      .listNodes()
      .filter((n) => n.role === 'voter')
      .map((n) => ({ nodeId: n.nodeId, addresses: this.addressesOf(n.nodeId) }));
  }

  /**
   * The Raft peers: the members of the configuration, and what a join told us (a new learner
   * knows no configuration until the leader's snapshot arrives, but must answer it).
   */
  raftPeers(conf: { voters: string[]; learners: string[]; votersOutgoing?: string[] }): PeerAddr[] {
    const members = new Set([...conf.voters, ...conf.learners, ...(conf.votersOutgoing ?? []), ...this.o.trusted().map((t) => t.nodeId)]);
    members.delete(this.o.self);
    return [...members].map((id) => ({ nodeId: id, addresses: this.addressesOf(id) }));
  }

  /** Every node whose connection health is watched: members, registered nodes and Peers. */
  watched(conf: { voters: string[]; learners: string[]; votersOutgoing?: string[] }): (PeerAddr & { name: string })[] {
    const { store } = this.o;
    const known = new Set<string>([...this.raftPeers(conf).map((p) => p.nodeId), ...store.listNodes().map((n) => n.nodeId)]);
    for (const p of store.list('Peer')) known.add((p.spec as PeerSpec).nodeId);
    known.delete(this.o.self);
    return [...known].map((id) => ({ nodeId: id, name: store.node(id)?.name ?? id.slice(0, 10), addresses: this.addressesOf(id) }));
  }
}
