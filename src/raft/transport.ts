// How Raft messages travel, as the node loop sees it. Messages are opaque bytes here; delivery is
// best effort (Raft retransmits), ordered per peer while a connection lasts. Implementations: an
// in-memory one for simulation and tests, and Iroh QUIC on ALPN blixard/raft/1 (p2p/).

export interface RaftPeer {
  nodeId: string;
  addresses: string[];
}

export interface Transport {
  /** Queues messages for a peer; they leave in as few writes as possible. Never throws. */
  send(to: string, messages: Uint8Array[]): void;
  /**
   * Sends one snapshot message (an encoded MsgSnap, of any size) beside the ordinary messages, in
   * chunks (see snapshot-transfer.ts), never in front of them. Resolves true once the peer holds
   * all of it and handed it to its node, false if the transfer failed; never rejects. The
   * receiving side delivers it to onReceive's handler whole, or not at all.
   */
  sendSnapshot(to: string, message: Uint8Array): Promise<boolean>;
  /** Where received messages go. */
  onReceive(handler: (from: string, message: Uint8Array) => void): void;
  /** Told when a peer could not be reached (a dial failed, a connection broke). */
  onUnreachable(handler: (peer: string) => void): void;
  /** The peers messages may be sent to, and how to reach them. */
  setPeers(peers: RaftPeer[]): void;
  close(): Promise<void>;
}
