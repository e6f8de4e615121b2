import type { Connection, Endpoint, NodeOptions } from '@number0/iroh';

// Blixard's own protocols on the node's one Iroh endpoint, each on its ALPN. Iroh needs the list
// when the node starts; handlers are attached later by the parts that serve them. Every
// connection is checked against the allowlist before any handler sees it: a node id that no Peer
// admits and that holds no valid join secret is refused on every Blixard protocol (SPEC 7).

export const ALPN = {
  raft: 'blixard/raft/1',
  api: 'blixard/api/1',
  peer: 'blixard/peer/1',
} as const;
export type Alpn = (typeof ALPN)[keyof typeof ALPN];

/** QUIC application close codes Blixard uses. */
export const CLOSE = { notAdmitted: 403n, noHandler: 404n, shutdown: 0n } as const;

export type ConnectionHandler = (conn: Connection, remote: string) => void | Promise<void>;

export interface RouterEvents {
  accepted(alpn: Alpn, remote: string): void;
  refused(alpn: Alpn, remote: string, why: string): void;
  error(alpn: Alpn, remote: string, err: unknown): void;
}

export class ProtocolRouter {
  private readonly handlers = new Map<Alpn, ConnectionHandler>();
  private endpoint: Endpoint | undefined;

  constructor(
    /** Whether a node id may talk to us on this ALPN (the admission allowlist). */
    private readonly admitted: (nodeId: string, alpn: Alpn) => boolean,
    private readonly events?: Partial<RouterEvents>,
  ) {}

  /** The `protocols` option for Iroh.persistent/memory. */
  irohProtocols(): NonNullable<NodeOptions['protocols']> {
    const out: Record<string, (err: Error | null, ep: Endpoint) => { accept: (err: Error | null, c: Connection) => void; shutdown: () => void }> = {};
    for (const alpn of Object.values(ALPN)) {
      out[alpn] = (_err, ep) => {
        this.endpoint ??= ep;
        return { accept: (err, conn) => void this.accept(alpn, err, conn), shutdown: () => {} };
      };
    }
    return out as unknown as NonNullable<NodeOptions['protocols']>;
  }

  handle(alpn: Alpn, handler: ConnectionHandler): void {
    this.handlers.set(alpn, handler);
  }

  private async accept(alpn: Alpn, err: Error | null, conn: Connection): Promise<void> {
    if (err) {
      // Iroh failed to hand over an incoming connection: rare, and worth knowing about.
      this.events?.error?.(alpn, '?', err);
      return;
    }
    let remote = '?';
    try {
      remote = conn.remoteNodeId().toString();
      if (!this.admitted(remote, alpn)) {
        this.events?.refused?.(alpn, remote, 'not admitted');
        conn.close(CLOSE.notAdmitted, Buffer.from('not admitted to this cluster'));
        return;
      }
      const h = this.handlers.get(alpn);
      if (!h) {
        this.events?.refused?.(alpn, remote, 'no handler');
        conn.close(CLOSE.noHandler, Buffer.from(`${alpn} is not served by this node`));
        return;
      }
      this.events?.accepted?.(alpn, remote);
      await h(conn, remote);
    } catch (e) {
      this.events?.error?.(alpn, remote, e);
    }
  }
}
