import type { Connection, Endpoint, NodeAddr } from '@number0/iroh';
import { FrameWriter, readFrames } from './framing.js';
import type { P2PMetrics } from './metrics.js';
import { connectWithTimeout, withTimeout } from './peers.js';
import { ALPN, CLOSE, type ProtocolRouter } from './protocols.js';

// Request/response between nodes on ALPN blixard/api/1: one QUIC stream per call, one JSON frame
// each way. Followers and workers forward API writes to the leader with it, and a joining node
// presents its join secret with it. Connections are cached per peer and redialled when they die.

export interface RpcRequest {
  method: string;
  path: string;
  body?: unknown;
}

export interface RpcResponse {
  status: number;
  body: unknown;
}

class StreamOpenError extends Error {}

export type RpcHandler = (req: RpcRequest, remote: string) => Promise<RpcResponse>;

/** No connection to the peer could be made: nothing was sent, so the call may be made again. */
export class RpcConnectError extends Error {}

export class RpcError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RpcError';
  }
}

/** Bytes of frames on blixard/api/1 (with their 4-byte length prefix). */
function countApiBytes(metrics: P2PMetrics | undefined, direction: 'sent' | 'received', frameBytes: number): void {
  metrics?.bytes.inc({ protocol: ALPN.api, direction }, frameBytes + 4);
}

export function serveRpc(router: ProtocolRouter, handler: RpcHandler, opts: { metrics?: P2PMetrics } = {}): void {
  router.handle(ALPN.api, async (conn, remote) => {
    for (;;) {
      let bi;
      try {
        bi = await conn.acceptBi();
      } catch {
        return; // the connection closed
      }
      void (async () => {
        const out = new FrameWriter(bi.send);
        try {
          let req: RpcRequest | undefined;
          for await (const frame of readFrames(bi.recv)) {
            countApiBytes(opts.metrics, 'received', frame.length);
            req = JSON.parse(frame.toString('utf8')) as RpcRequest;
            break;
          }
          if (!req) return;
          const res = Buffer.from(JSON.stringify(await handler(req, remote)));
          await out.write(res);
          countApiBytes(opts.metrics, 'sent', res.length);
        } catch (e) {
          await out.write(Buffer.from(JSON.stringify({ status: 500, body: { error: { code: 'internal', message: (e as Error).message } } }))).catch(() => {});
        } finally {
          await out.finish().catch(() => {});
        }
      })();
    }
  });
}

export class RpcClient {
  private readonly conns = new Map<string, Promise<Connection>>();

  constructor(
    private readonly endpoint: () => Endpoint,
    private readonly opts: { connectTimeoutMs?: number; callTimeoutMs?: number; metrics?: P2PMetrics } = {},
  ) {}

  async call(to: NodeAddr, req: RpcRequest, timeoutMs = this.opts.callTimeoutMs ?? 30_000): Promise<RpcResponse> {
    const cached = this.conns.has(to.nodeId);
    const conn = await this.connection(to).catch((e: unknown) => {
      throw new RpcConnectError((e as Error).message);
    });
    this.inFlight.set(conn, (this.inFlight.get(conn) ?? 0) + 1);
    try {
      return await withTimeout(this.exchange(conn, req), timeoutMs, `${req.method} ${req.path} on ${to.nodeId.slice(0, 10)}`);
    } catch (e) {
      // A dead connection is forgotten so that the next call dials afresh.
      this.forget(to.nodeId, conn);
      // A cached connection may have died while idle (idle timeout, the peer restarted): when no
      // stream could be opened on it, nothing was sent, and the call goes out once more on a fresh
      // one. Once the request is written it is never sent again from here: the peer may have taken
      // it, and a resend that QUIC's retransmissions delay until the peer restarts (tens of
      // seconds) would outlive the memory of request ids and apply a write twice. The caller,
      // still waiting, decides (Leader.run asks again at once, within the request's lifetime).
      if (cached && e instanceof StreamOpenError) return this.call(to, req, timeoutMs);
      throw e instanceof RpcError ? e : new RpcError((e as Error).message);
    } finally {
      const n = (this.inFlight.get(conn) ?? 1) - 1;
      if (n > 0) this.inFlight.set(conn, n);
      else {
        this.inFlight.delete(conn);
        if (this.retiring.delete(conn)) conn.close(CLOSE.shutdown, Buffer.from('replaced'));
      }
    }
  }

  /**
   * The peer may be a new process under the same node id (it dialled us afresh, or its session
   * dropped): a cached connection to the old one would swallow calls until QUIC's idle timeout.
   * The next call dials anew; calls already on the old connection finish there.
   */
  forgetPeer(nodeId: string): void {
    const p = this.conns.get(nodeId);
    if (!p) return;
    this.conns.delete(nodeId);
    void p.then((c) => this.closeWhenIdle(c), () => {});
  }

  private readonly inFlight = new Map<Connection, number>();
  private readonly retiring = new Set<Connection>();

  private closeWhenIdle(c: Connection): void {
    if ((this.inFlight.get(c) ?? 0) === 0) c.close(CLOSE.shutdown, Buffer.from('replaced'));
    else this.retiring.add(c);
  }

  close(): void {
    for (const [id, p] of this.conns) {
      void p.then((c) => c.close(CLOSE.shutdown, Buffer.from('bye'))).catch(() => {});
      this.conns.delete(id);
    }
  }

  private async exchange(conn: Connection, req: RpcRequest): Promise<RpcResponse> {
    let bi;
    try {
      bi = await conn.openBi();
    } catch (e) {
      throw new StreamOpenError((e as Error).message);
    }
    const out = new FrameWriter(bi.send);
    const body = Buffer.from(JSON.stringify(req));
    await out.write(body);
    countApiBytes(this.opts.metrics, 'sent', body.length);
    await out.finish();
    for await (const frame of readFrames(bi.recv)) {
      countApiBytes(this.opts.metrics, 'received', frame.length);
      return JSON.parse(frame.toString('utf8')) as RpcResponse;
    }
    const reason = conn.closeReason();
    throw new RpcError(reason ? `the peer closed the connection: ${reason}` : 'the peer sent no answer');
  }

  private connection(to: NodeAddr): Promise<Connection> {
    let p = this.conns.get(to.nodeId);
    if (!p) {
      p = connectWithTimeout(this.endpoint(), to, ALPN.api, this.opts.connectTimeoutMs ?? 3000, `connect to ${to.nodeId.slice(0, 10)}`);
      this.conns.set(to.nodeId, p);
      p.then(
        (c) => void c.closed().then(() => this.forget(to.nodeId, c)),
        () => this.conns.delete(to.nodeId),
      );
    }
    return p;
  }

  private forget(nodeId: string, conn: Connection): void {
    void this.conns.get(nodeId)?.then((c) => {
      if (c === conn) this.conns.delete(nodeId);
    }, () => {});
  }
}
