import type { Endpoint, Iroh } from '@number0/iroh';
import { startIroh, type IrohNodeOptions } from './iroh.js';
import type { P2PMetrics } from './metrics.js';
import { PeerManager, type PeerHealth, type PeerManagerOptions } from './peers.js';
import { ProtocolRouter, type Alpn } from './protocols.js';
import { IrohRaftTransport, type IrohRaftTransportOptions } from './raft-transport.js';
import { RpcClient } from './rpc.js';

// A node's P2P network, as the daemon and the multi-process test nodes both build it: one Iroh
// node with the protocol router and its admission check (Iroh needs the ALPNs at start), the RPC
// client on blixard/api/1, connection health per peer, and the Raft transport. A peer that dials
// us afresh, or whose session drops, may be a restarted process: cached RPC connections to it go.

export interface NetworkOptions extends Omit<IrohNodeOptions, 'protocols'> {
  /** Whether a node id may talk to us on this ALPN (the admission allowlist). */
  admit: (nodeId: string, alpn: Alpn) => boolean;
  metrics: P2PMetrics;
  /** Why a connection was refused or a handler ended (debugging; never an error of ours). */
  debug?: (o: object, msg: string) => void;
  peers?: Pick<PeerManagerOptions, 'pingIntervalMs' | 'deadAfterMs' | 'connectTimeoutMs' | 'backoff'>;
  /** A peer's connection failed (news only while it lasts). */
  onPeerError?: (nodeId: string, err: unknown) => void;
  raft?: Omit<IrohRaftTransportOptions, 'metrics'>;
}

export class P2PNetwork {
  private readonly peerListeners: ((h: PeerHealth) => void)[] = [];
  private readonly refusals: ((alpn: Alpn, remote: string, why: string) => void)[] = [];
  readonly rpc: RpcClient;
  readonly peers: PeerManager;
  readonly transport: IrohRaftTransport;

  private constructor(
    readonly iroh: Iroh,
    readonly router: ProtocolRouter,
    o: NetworkOptions,
  ) {
    const endpoint = () => this.endpoint();
    this.rpc = new RpcClient(endpoint, { metrics: o.metrics });
    this.peers = new PeerManager({
      endpoint,
      router,
      metrics: o.metrics,
      ...o.peers,
      ...(o.onPeerError ? { onError: o.onPeerError } : {}),
      onChange: (h) => {
        if (!h.connected) this.rpc.forgetPeer(h.nodeId);
        for (const fn of this.peerListeners) fn(h);
      },
    });
    this.transport = new IrohRaftTransport(endpoint, router, { metrics: o.metrics, ...o.raft });
  }

  static async start(o: NetworkOptions): Promise<P2PNetwork> {
    const { metrics } = o;
    let net: P2PNetwork | undefined;
    const router = new ProtocolRouter(o.admit, {
      accepted: (alpn, remote) => {
        metrics.connections.inc({ protocol: alpn, result: 'accepted' });
        net?.rpc.forgetPeer(remote);
        net?.peers.wakeUp(remote);
      },
      refused: (alpn, remote, why) => {
        metrics.connections.inc({ protocol: alpn, result: 'refused' });
        o.debug?.({ alpn, remote, why }, 'connection refused');
        for (const fn of net?.refusals ?? []) fn(alpn, remote, why);
      },
      error: (alpn, remote, err) => o.debug?.({ alpn, remote, err: (err as Error)?.message }, 'protocol handler ended'),
    });
    const iroh = await startIroh({ dir: o.dir, secretKey: o.secretKey, listen: o.listen, discovery: o.discovery, protocols: router.irohProtocols() });
    net = new P2PNetwork(iroh, router, o);
    return net;
  }

  endpoint(): Endpoint {
    return this.iroh.node.endpoint();
  }

  async nodeId(): Promise<string> {
    return this.iroh.net.nodeId();
  }

  /** The addresses peers can reach this node on. */
  async addresses(): Promise<string[]> {
    return (await this.iroh.net.nodeAddr()).addresses ?? [];
  }

  /** A peer's session came up or went down (after the network's own bookkeeping). */
  onPeerChange(fn: (h: PeerHealth) => void): void {
    this.peerListeners.push(fn);
  }

  onRefused(fn: (alpn: Alpn, remote: string, why: string) => void): void {
    this.refusals.push(fn);
  }

  /** Stops watching peers and closes cached connections, then Iroh itself. */
  async stop(): Promise<void> {
    this.peers.stop();
    this.rpc.close();
    await this.iroh.node.shutdown();
  }
}
