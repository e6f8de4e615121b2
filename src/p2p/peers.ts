import type { Connection, Endpoint, NodeAddr } from '@number0/iroh';
import { FrameWriter, readFrames } from './framing.js';
import type { P2PMetrics } from './metrics.js';
import { ALPN, CLOSE, type ProtocolRouter } from './protocols.js';

// The peer manager keeps one live connection to every admitted peer on ALPN blixard/peer/1 and
// measures its health (RTT, last seen). A connection that fails or goes quiet is closed and
// dialled again with exponential backoff and full jitter, forever: no operator action heals it.

export interface PeerAddress {
  nodeId: string;
  name?: string;
  addresses: string[];
  /** This peer's ping interval, when it is not the manager's (pingIntervalMs). */
  pingEveryMs?: number;
}

export interface PeerHealth {
  nodeId: string;
  name: string;
  addresses: string[];
  connected: boolean;
  rttMs: number | null;
  lastSeen: string | null;
  lastError: string | null;
  /** Connections made to this peer since the manager started (1 = never lost). */
  connects: number;
}

export interface PeerManagerOptions {
  endpoint: () => Endpoint;
  router: ProtocolRouter;
  pingIntervalMs?: number;
  /** A peer that answers no ping for this long is treated as gone. */
  deadAfterMs?: number;
  connectTimeoutMs?: number;
  backoff?: { baseMs: number; maxMs: number };
  random?: () => number;
  onChange?: (h: PeerHealth) => void;
  onError?: (nodeId: string, err: unknown) => void;
  /** Peers connected, RTT per peer, ping bytes, and connection failures go here. */
  metrics?: P2PMetrics;
}

interface PeerState extends PeerHealth {
  heardAt?: number;
  pingEveryMs?: number;
  stop: AbortController;
  wake: () => void;
}

export class PeerManager {
  private readonly peers = new Map<string, PeerState>();
  private readonly o: Required<Omit<PeerManagerOptions, 'onChange' | 'onError' | 'metrics'>> & Pick<PeerManagerOptions, 'onChange' | 'onError' | 'metrics'>;

  constructor(opts: PeerManagerOptions) {
    this.o = {
      pingIntervalMs: 1000,
      deadAfterMs: 5000,
      connectTimeoutMs: 3000,
      backoff: { baseMs: 200, maxMs: 10_000 },
      random: Math.random,
      ...opts,
    };
    // The answering side: echo pings, and count the peer as seen.
    opts.router.handle(ALPN.peer, async (conn, remote) => {
      const bi = await conn.acceptBi();
      const out = new FrameWriter(bi.send);
      for await (const frame of readFrames(bi.recv)) {
        const p = this.peers.get(remote);
        if (p) p.lastSeen = new Date().toISOString();
        this.wakeUp(remote);
        this.countBytes('received', frame.length + 4);
        await out.write(frame); // the ping comes back as its own pong
        this.countBytes('sent', frame.length + 4);
      }
    });
  }

  /** The admitted peers and where to reach them; dials new ones, forgets removed ones. */
  setPeers(list: PeerAddress[]): void {
    const want = new Map(list.map((p) => [p.nodeId, p]));
    for (const [id, st] of this.peers) {
      if (!want.has(id)) {
        st.stop.abort();
        this.peers.delete(id);
        this.o.metrics?.peerRtt.remove({ peer: id });
      }
    }
    this.countConnected();
    for (const p of list) {
      const cur = this.peers.get(p.nodeId);
      if (cur) {
        const moved = cur.addresses.join() !== p.addresses.join();
        cur.addresses = [...p.addresses];
        cur.name = p.name ?? cur.name;
        if (p.pingEveryMs === undefined) delete cur.pingEveryMs;
        else cur.pingEveryMs = p.pingEveryMs;
        if (moved) cur.wake();
        continue;
      }
      const st: PeerState = {
        nodeId: p.nodeId,
        name: p.name ?? p.nodeId.slice(0, 10),
        addresses: [...p.addresses],
        connected: false,
        rttMs: null,
        lastSeen: null,
        lastError: null,
        connects: 0,
        stop: new AbortController(),
        wake: () => {},
        ...(p.pingEveryMs !== undefined ? { pingEveryMs: p.pingEveryMs } : {}),
      };
      this.peers.set(p.nodeId, st);
      void this.run(st);
    }
  }

  list(): PeerHealth[] {
    return [...this.peers.values()].map(health).sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /**
   * The peer reached us (a ping, or a connection on any protocol): if our own session to it is
   * down and waiting out its backoff, dial now. After a partition heals, forwarding goes by our
   * pings being answered again, so they should not wait up to the backoff's 10 s.
   */
  wakeUp(nodeId: string): void {
    const p = this.peers.get(nodeId);
    if (p && !p.connected) p.wake();
  }

  /** When the peer last answered one of this node's pings (ms since the epoch): proof of a round trip. */
  heardAt(nodeId: string): number | undefined {
    return this.peers.get(nodeId)?.heardAt;
  }

  get(nodeId: string): PeerHealth | undefined {
    const p = this.peers.get(nodeId);
    return p ? health(p) : undefined;
  }

  stop(): void {
    for (const p of this.peers.values()) {
      p.stop.abort();
      this.o.metrics?.peerRtt.remove({ peer: p.nodeId });
    }
    this.peers.clear();
    this.countConnected();
  }

  private async run(st: PeerState): Promise<void> {
    let failures = 0;
    while (!st.stop.signal.aborted) {
      try {
        await this.session(st);
        failures = 0;
      } catch (e) {
        if (st.stop.signal.aborted) break;
        st.lastError = (e as Error)?.message ?? String(e);
        this.o.metrics?.errors.inc({ component: 'peer-connection' });
        this.o.onError?.(st.nodeId, e);
      }
      this.setConnected(st, false);
      failures++;
      // Full jitter (AWS architecture blog): spread reconnects so peers do not dial in lockstep.
      const cap = Math.min(this.o.backoff.maxMs, this.o.backoff.baseMs * 2 ** Math.min(failures, 16));
      await this.sleep(st, cap / 2 + this.o.random() * (cap / 2));
    }
  }

  /** One connection's life: dial, then ping until it fails or goes quiet. */
  private async session(st: PeerState): Promise<void> {
    const conn = await connectWithTimeout(this.o.endpoint(), { nodeId: st.nodeId, addresses: st.addresses }, ALPN.peer, this.o.connectTimeoutMs, `connect to ${st.name}`);
    const closeOnStop = () => conn.close(CLOSE.shutdown, Buffer.from('peer removed'));
    st.stop.signal.addEventListener('abort', closeOnStop, { once: true });
    try {
      const bi = await withTimeout(conn.openBi(), this.o.connectTimeoutMs, `open a stream to ${st.name}`);
      const out = new FrameWriter(bi.send);
      const sent = new Map<number, number>();
      let seq = 0;
      let lastPong = Date.now();
      let first = true;
      const reader = (async () => {
        for await (const frame of readFrames(bi.recv)) {
          const n = frame.readUInt32BE(0);
          const t0 = sent.get(n);
          sent.delete(n);
          lastPong = Date.now();
          st.heardAt = lastPong;
          this.countBytes('received', frame.length + 4);
          if (t0 !== undefined) {
            st.rttMs = Math.round((performance.now() - t0) * 100) / 100;
            this.o.metrics?.peerRtt.set({ peer: st.nodeId }, st.rttMs / 1000);
          }
          st.lastSeen = new Date().toISOString();
          if (first) {
            first = false;
            st.connects++;
            st.lastError = null;
            this.setConnected(st, true);
          }
        }
        throw new Error(`${st.name} closed the stream`);
      })();
      const pinger = (async () => {
        while (!st.stop.signal.aborted) {
          if (Date.now() - lastPong > this.o.deadAfterMs) throw new Error(`${st.name} answered no ping for ${this.o.deadAfterMs} ms`);
          const frame = Buffer.allocUnsafe(4);
          frame.writeUInt32BE(++seq >>> 0, 0);
          sent.set(seq, performance.now());
          if (sent.size > 64) sent.delete(sent.keys().next().value!);
          await out.write(frame);
          this.countBytes('sent', frame.length + 4);
          await this.sleep(st, st.pingEveryMs ?? this.o.pingIntervalMs);
        }
      })();
      // Whichever loop ends first ends the session; the other's failure is expected, not news.
      reader.catch(() => {});
      pinger.catch(() => {});
      await Promise.race([reader, pinger]);
    } finally {
      st.stop.signal.removeEventListener('abort', closeOnStop);
      safeClose(conn);
    }
  }

  private setConnected(st: PeerState, connected: boolean): void {
    if (st.connected === connected) return;
    st.connected = connected;
    this.countConnected();
    this.o.onChange?.(health(st));
  }

  private countConnected(): void {
    if (!this.o.metrics) return;
    let n = 0;
    for (const p of this.peers.values()) if (p.connected) n++;
    this.o.metrics.peersConnected.set(n);
  }

  private countBytes(direction: 'sent' | 'received', n: number): void {
    this.o.metrics?.bytes.inc({ protocol: ALPN.peer, direction }, n);
  }

  private sleep(st: PeerState, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        st.stop.signal.removeEventListener('abort', done);
        resolve();
      }
      st.wake = done;
      st.stop.signal.addEventListener('abort', done, { once: true });
    });
  }
}

function health(p: PeerState): PeerHealth {
  return { nodeId: p.nodeId, name: p.name, addresses: [...p.addresses], connected: p.connected, rttMs: p.rttMs, lastSeen: p.lastSeen, lastError: p.lastError, connects: p.connects };
}

function safeClose(conn: Connection): void {
  try {
    conn.close(CLOSE.shutdown, Buffer.from('bye'));
  } catch {
    // already closed
  }
}

/** Iroh's own connect timeout is 30 s; a dead peer must cost far less. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

/**
 * Dials with a timeout far below Iroh's 30 s. A connection that completes after the caller gave
 * up is closed at once, rather than left open until QUIC's idle timeout.
 */
export async function connectWithTimeout(endpoint: Endpoint, to: NodeAddr, alpn: string, ms: number, what: string): Promise<Connection> {
  const dialing = endpoint.connect(to, Buffer.from(alpn));
  try {
    return await withTimeout(dialing, ms, what);
  } catch (e) {
    dialing.then((late) => safeClose(late), () => {});
    throw e;
  }
}
