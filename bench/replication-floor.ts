import { fork, type ChildProcess } from 'node:child_process';
import { open, type FileHandle } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Endpoint, NodeAddr } from '@number0/iroh';
import { ApiClient } from '../src/api/client.js';
import { bindAddresses, connectWithTimeout, FrameWriter, readFrames } from '../src/p2p/index.js';
import { removeDir, tempDir } from '../test/helpers/daemon.js';

// What this machine allows a replicated write at all, with none of Blixard's logic: 64 HTTP
// clients (the same ApiClient) post to a leader process that group-commits the bodies to a file
// with fdatasync and sends each batch over Iroh QUIC to 2 follower processes, which append and
// fdatasync it too and answer; a write is answered once the leader's and one follower's fsync are
// done. No Raft, no state machine, no document. Whatever the real cluster reaches sits below this.

const ALPN_FLOOR = 'blixard/bench-floor/1';
const here = fileURLToPath(import.meta.url);

interface Ready {
  addr?: NodeAddr;
  port?: number;
}

/** Appends batches to a file, one fdatasync covering every batch that came while the last ran. */
class GroupLog {
  private pending: { data: Buffer; done: () => void }[] = [];
  private flushing = false;
  constructor(private readonly fh: FileHandle) {}
  append(data: Buffer): Promise<void> {
    return new Promise((done) => {
      this.pending.push({ data, done });
      if (!this.flushing) void this.flush();
    });
  }
  private async flush(): Promise<void> {
    this.flushing = true;
    while (this.pending.length > 0) {
      const batch = this.pending;
      this.pending = [];
      await this.fh.write(Buffer.concat(batch.map((b) => b.data)));
      await this.fh.datasync();
      for (const b of batch) b.done();
    }
    this.flushing = false;
  }
}

async function startIroh(accept?: (ep: Endpoint, conn: import('@number0/iroh').Connection) => void) {
  const { Iroh, NodeDiscoveryConfig } = await import('@number0/iroh');
  const protocols = accept
    ? { [ALPN_FLOOR]: (_e: Error | null, ep: Endpoint) => ({ accept: (_err: Error | null, conn: import('@number0/iroh').Connection) => accept(ep, conn), shutdown: () => {} }) }
    : undefined;
  return Iroh.memory({ enableDocs: false, nodeDiscovery: NodeDiscoveryConfig.None, ...bindAddresses('127.0.0.1:0'), ...(protocols ? { protocols: protocols as never } : {}) });
}

async function follower(dir: string): Promise<void> {
  const log = new GroupLog(await open(path.join(dir, `follower-${process.pid}.log`), 'a'));
  const iroh = await startIroh((_ep, conn) => {
    void (async () => {
      const bi = await conn.acceptBi();
      const out = new FrameWriter(bi.send);
      for await (const frame of readFrames(bi.recv)) {
        const seq = frame.readUInt32BE(0);
        void log.append(Buffer.from(frame)).then(() => {
          const ack = Buffer.allocUnsafe(4);
          ack.writeUInt32BE(seq, 0);
          return out.write(ack);
        });
      }
    })().catch(() => {});
  });
  process.send!({ addr: await iroh.net.nodeAddr() } satisfies Ready);
  process.on('disconnect', () => void iroh.node.shutdown().finally(() => process.exit(0)));
}

async function leader(dir: string, followers: NodeAddr[]): Promise<void> {
  const log = new GroupLog(await open(path.join(dir, 'leader.log'), 'a'));
  const iroh = await startIroh();
  const ep = iroh.node.endpoint();
  const acks = new Map<number, { need: number; done: () => void }>();
  const writers: FrameWriter[] = [];
  for (const f of followers) {
    const conn = await connectWithTimeout(ep, f, ALPN_FLOOR, 10_000, 'floor follower');
    const bi = await conn.openBi();
    writers.push(new FrameWriter(bi.send));
    void (async () => {
      for await (const frame of readFrames(bi.recv)) {
        const seq = frame.readUInt32BE(0);
        const a = acks.get(seq);
        if (a && --a.need === 0) {
          acks.delete(seq);
          a.done();
        }
      }
    })().catch(() => {});
  }
  // Requests that arrived while the previous batch was in flight go out together.
  let queue: { body: Buffer; res: ServerResponse }[] = [];
  let busy = false;
  let seq = 0;
  const pump = async () => {
    busy = true;
    while (queue.length > 0) {
      const batch = queue;
      queue = [];
      const s = ++seq;
      const head = Buffer.allocUnsafe(4);
      head.writeUInt32BE(s, 0);
      const frame = Buffer.concat([head, ...batch.map((b) => b.body)]);
      const replicated = new Promise<void>((done) => acks.set(s, { need: 1, done }));
      for (const w of writers) void w.write(frame).catch(() => {});
      await Promise.all([log.append(frame), replicated]);
      for (const b of batch) {
        const text = JSON.stringify({ index: s, results: [] });
        b.res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        b.res.end(text);
      }
    }
    busy = false;
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      JSON.parse(body.toString('utf8')); // as a real server would
      queue.push({ body, res });
      if (!busy) void pump();
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as { port: number }).port } satisfies Ready));
  process.on('disconnect', () => void iroh.node.shutdown().finally(() => process.exit(0)));
}

function child(args: string[]): Promise<{ proc: ChildProcess; ready: Ready }> {
  const proc = fork(here, args, { env: { ...process.env, IROH_FORCE_STAGING_RELAYS: '1' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    proc.once('message', (m) => resolve({ proc, ready: m as Ready }));
    proc.once('exit', (code) => reject(new Error(`floor bench child ${args[0]} exited with ${code}`)));
  });
}

export interface FloorResult {
  clients: number;
  rate: number;
  p50: number;
  p99: number;
}

/** The floor at each client count, on the same three processes (1 client: latency; 64: throughput). */
export async function replicationFloor(clientCounts: number[] = [1, 64], seconds = 5): Promise<FloorResult[]> {
  const dir = await tempDir('blixard-floor-');
  const procs: ChildProcess[] = [];
  try {
    const fs = await Promise.all([child(['follower', dir]), child(['follower', dir])]);
    procs.push(...fs.map((f) => f.proc));
    const l = await child(['leader', dir, JSON.stringify(fs.map((f) => f.ready.addr))]);
    procs.push(l.proc);
    const client = new ApiClient({ server: `http://127.0.0.1:${l.ready.port}`, token: 'floor' });
    const body = (i: number, c: number) => ({ desired: [{ kind: 'Image', name: `b-${c}-${i}`, labels: {}, spec: { blob: `blake3:${'f'.repeat(64)}`, format: 'raw' }, source: { hash: `blake3:${'f'.repeat(64)}`, size: null } }], applyset: `c${c}-${i}`, prune: false, maxPrune: 0, dryRun: false });
    const run = async (clients: number, secs: number): Promise<FloorResult> => {
      const lat: number[] = [];
      const end = performance.now() + secs * 1000;
      const start = performance.now();
      await Promise.all(
        Array.from({ length: clients }, async (_, c) => {
          for (let i = 0; performance.now() < end; i++) {
            const t = performance.now();
            await client.apply(body(i, clients * 1000 + c) as never);
            lat.push(performance.now() - t);
          }
        }),
      );
      lat.sort((a, b) => a - b);
      return { clients, rate: lat.length / ((performance.now() - start) / 1000), p50: lat[Math.floor(lat.length * 0.5)]!, p99: lat[Math.floor(lat.length * 0.99)]! };
    };
    const out: FloorResult[] = [];
    for (const clients of clientCounts) {
      await run(clients, 1); // warm-up
      out.push(await run(clients, seconds));
    }
    client.close();
    return out;
  } finally {
    for (const p of procs) p.disconnect?.();
    await Promise.all(procs.map((p) => new Promise((r) => (p.exitCode !== null ? r(null) : p.once('exit', r)))));
    await removeDir(dir);
  }
}

if (process.argv[2] === 'follower') await follower(process.argv[3]!);
else if (process.argv[2] === 'leader') await leader(process.argv[3]!, JSON.parse(process.argv[4]!) as NodeAddr[]);
