import { randomBytes } from 'node:crypto';
import { open as openFile, mkdir, readFile, readdir, rename, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import type { Iroh, LogLevel, NodeAddr } from '@number0/iroh';
import {
  Bitmap,
  ImageStore,
  NodeImages,
  holdingsOf,
  type EngineConfig,
  type Priority,
  type TransferProgress,
} from '../../src/images/index.js';
import { ReplicatedDoc, downloadBlob, shareFile, startIroh, type DocEvent } from '../../src/p2p/index.js';
import { StatusView, StatusWriter, follow } from '../../src/sync/index.js';

// One node's image machinery in its own process, on a real persistent Iroh node, for the
// multi-process tests and the benchmark: the image store, the holdings publisher and a
// StatusView on a shared status document, the prefetcher (download engine, limiter) and the
// cache. A node killed with SIGKILL and started again on the same dir comes back as it was (same
// key, port, document, peers), as a daemon would.
//
//   node dist/test/helpers/images-node.js '{"dir":"/tmp/x"}'
//
// Prints {"event":"ready",...}, then answers each JSON line on stdin ({"id":1,"op":"info"}) with
// one JSON line ({"id":1,"ok":true,...} or {"id":1,"ok":false,"error":"..."}); commands run
// concurrently; pulls also print {"event":"progress",...} lines. Exits when stdin closes.

export interface ImagesNodeConfig {
  dir: string;
  pieceSize?: number;
  /** Bytes per second for this node's downloads (null: unlimited). */
  rate?: number | null;
  engine?: Partial<EngineConfig>;
  findTimeoutMs?: number;
  /** Progress events at most this often per pull (ms); 0: none. */
  progressMs?: number;
}

interface Persisted {
  secretKey: string;
  port: number;
  doc: { id: string; ticket: string } | null;
  authors: Record<string, string>;
  peers: NodeAddr[];
}

type Cmd = { id: number; op: string; [k: string]: unknown };

function send(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v))}\n`);
}

function log(msg: string, extra: Record<string, unknown> = {}): void {
  process.stderr.write(`${JSON.stringify({ t: new Date().toISOString(), msg, ...extra })}\n`);
}

async function freeUdpPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export async function runImagesNode(cfg: ImagesNodeConfig): Promise<void> {
  await mkdir(cfg.dir, { recursive: true });
  const stateFile = path.join(cfg.dir, 'harness.json');
  const state: Persisted = await readFile(stateFile, 'utf8')
    .then((t) => JSON.parse(t) as Persisted)
    .catch(async () => ({ secretKey: randomBytes(32).toString('hex'), port: await freeUdpPort(), doc: null, authors: {}, peers: [] }));
  const save = async () => {
    await writeFile(`${stateFile}.tmp`, JSON.stringify(state));
    await rename(`${stateFile}.tmp`, stateFile);
  };
  await save();

  // IMAGES_NODE_IROH_LOG=Debug (a LogLevel): Iroh's own log, which it prints on stdout; the
  // cluster ignores lines that are not JSON and echoes them with IMAGES_NODE_LOG.
  if (process.env.IMAGES_NODE_IROH_LOG) (await import('@number0/iroh')).setLogLevel(process.env.IMAGES_NODE_IROH_LOG as LogLevel);
  const iroh: Iroh = await startIroh({ dir: path.join(cfg.dir, 'iroh'), secretKey: Buffer.from(state.secretKey, 'hex'), listen: `127.0.0.1:${state.port}`, discovery: 'none' });
  const self = await iroh.net.nodeId();
  const author = (await iroh.authors.default()).toString();
  const addresses = (await iroh.net.nodeAddr()).addresses ?? [];

  const log_ = { info: (o: object, m?: string) => log(m ?? '', o as Record<string, unknown>), warn: (o: object, m?: string) => log(m ?? '', { level: 'warn', ...(o as Record<string, unknown>) }), debug: (o: object, m?: string) => (process.env.IMAGES_NODE_DEBUG ? log(m ?? '', { level: 'debug', ...(o as Record<string, unknown>) }) : undefined) };
  const store = await ImageStore.open({ dir: path.join(cfg.dir, 'images'), iroh, ...(cfg.pieceSize ? { pieceSize: cfg.pieceSize } : {}), log: log_ });
  let view: StatusView | undefined;
  let doc: ReplicatedDoc | undefined;
  const addrOf = new Map<string, NodeAddr>(state.peers.map((p) => [p.nodeId, p]));
  let inUse: string[] = [];
  // The daemon's own image machinery (holdings, prefetcher under the limiter, cache).
  const images = new NodeImages({
    self,
    store,
    status: () => view,
    addressOf: (id) => addrOf.get(id),
    bytesPerSec: cfg.rate ?? null,
    cacheBytes: null,
    inUse: () => inUse,
    ...(cfg.engine ? { engine: cfg.engine } : {}),
    ...(cfg.findTimeoutMs ? { findTimeoutMs: cfg.findTimeoutMs } : {}),
    onError: (e) => log('holdings write failed', { err: (e as Error).message }),
    log: log_,
  });
  const { holdings: publisher, limiter, prefetcher, cache } = images;

  async function openDoc(how: { create: true } | { id: string; ticket: string }): Promise<void> {
    // As the daemon opens its documents (sync/follow.ts): the view gets the events from the first.
    const { doc: d, view: v } = await follow(
      async (onEvent) => {
        if (!('create' in how)) return ReplicatedDoc.openOrJoin(iroh, how.id, how.ticket, onEvent, { peers: state.peers });
        const created = await ReplicatedDoc.create(iroh);
        await created.subscribe(onEvent);
        return created;
      },
      (created) => new StatusView(created, (id) => state.authors[id], () => prefetcher.holdingsChanged()),
    );
    await v.load();
    doc = d;
    view = v;
    await images.attach(new StatusWriter(d, self));
  }
  if (state.doc) await openDoc(state.doc);

  const ops: Record<string, (c: Cmd) => Promise<Record<string, unknown>>> = {
    info: async () => ({ nodeId: self, addresses, author, port: state.port }),
    'create-status': async () => {
      await openDoc({ create: true });
      state.doc = { id: doc!.id, ticket: await doc!.ticket('Write') };
      await save();
      return { docId: state.doc.id, ticket: state.doc.ticket };
    },
    'join-status': async (c) => {
      state.doc = { id: String(c.docId), ticket: String(c.ticket) };
      await save();
      await openDoc(state.doc);
      return {};
    },
    trust: async (c) => {
      Object.assign(state.authors, c.authors as Record<string, string>);
      await save();
      await view?.load();
      prefetcher.holdingsChanged();
      return {};
    },
    peers: async (c) => {
      state.peers = (c.peers as NodeAddr[]).filter((p) => p.nodeId !== self);
      for (const p of state.peers) addrOf.set(p.nodeId, p);
      await save();
      if (doc && state.peers.length > 0) await doc.startSync(state.peers);
      return {};
    },
    import: async (c) => {
      const t0 = performance.now();
      const r = await store.importFile(String(c.file), (c.expected as string | undefined) ?? null, c.pieceSize ? { pieceSize: Number(c.pieceSize) } : {});
      const ms = performance.now() - t0;
      await publisher.flush();
      return { ...r, ms };
    },
    /** Lies in the status document: says it holds `claim`, with the pieces of another file. */
    forge: async (c) => {
      const r = await store.importFile(String(c.file));
      const m = (await store.manifest(r.hash))!;
      publisher.full({ ...m, hash: String(c.claim) });
      await publisher.flush();
      return { real: r.hash };
    },
    'import-raw': async (c) => ({ ...(await shareFile(iroh, String(c.file))) }),
    'raw-download': async (c) => {
      const from = addrOf.get(String(c.from));
      if (!from) throw new Error(`no address for ${String(c.from)}`);
      const t0 = performance.now();
      const r = await downloadBlob(iroh, String(c.hash), [from], { tag: `bench/${randomBytes(4).toString('hex')}` });
      return { ms: performance.now() - t0, bytes: r.bytes };
    },
    'drop-raw': async (c) => {
      await iroh.blobs.deleteBlob(String(c.hash).replace(/^blake3:/, '')).catch(() => {});
      return {};
    },
    pull: async (c) => {
      const hash = String(c.hash);
      const every = cfg.progressMs ?? 100;
      let last = 0;
      const t0 = performance.now();
      const r = await prefetcher.fetch(hash, {
        priority: (c.priority as Priority | undefined) ?? 'vm',
        materialize: c.materialize !== false,
        onProgress: (p: TransferProgress) => {
          const now = performance.now();
          if (every > 0 && now - last >= every) {
            last = now;
            send({ event: 'progress', id: c.id, ...p });
          }
        },
      });
      const ms = performance.now() - t0;
      await publisher.flush();
      return { ...r, ms, file: store.hasComplete(hash) ? store.fileOf(hash) : null };
    },
    has: async (c) => {
      const hash = String(c.hash);
      const img = store.get(hash);
      const m = img ? await store.manifest(hash).catch(() => undefined) : undefined;
      const have = m ? await store.localPieces(m) : null;
      return { has: await store.has(hash), state: img?.state ?? null, pieces: have?.count ?? 0, of: m?.pieces.length ?? 0, file: await store.fileBytes(hash) };
    },
    path: async (c) => ({ file: await store.pathFor(String(c.hash)) }),
    holdings: async (c) => ({ holdings: view ? holdingsOf(view, String(c.hash)).map((h) => ({ nodeId: h.nodeId, have: h.have === 'all' ? 'all' : (h.have as Bitmap).count, collection: h.collection })) : [] }),
    gc: async (c) => {
      inUse = (c.inUse as string[] | undefined) ?? [];
      cache.setLimit((c.limit as number | null | undefined) ?? null);
      const r = await cache.collect();
      await publisher.flush();
      return { ...r };
    },
    forget: async (c) => {
      const m = await store.manifest(String(c.hash)).catch(() => undefined);
      await store.remove(String(c.hash), { force: true });
      await publisher.flush();
      // A pull right after waits for the store to have really deleted the pieces (see
      // DELETE_SETTLE_MS): waited here, the pull that follows measures only its transfer.
      if (m) await store.blobs.settle(m.pieces);
      return {};
    },
    list: async () => ({ images: store.list() }),
    manifest: async (c) => ({ manifest: (await store.manifest(String(c.hash))) ?? null }),
    /** Which of these blobs (hex) the Iroh store holds whole. */
    blobs: async (c) => ({ complete: await Promise.all((c.hexes as string[]).map((h) => store.blobs.isComplete(h))) }),
    /** Flips a byte in the store's own file of a piece (what a failing disk would do). */
    'corrupt-piece': async (c) => {
      const m = (await store.manifest(String(c.hash)))!;
      const piece = m.pieces[Number(c.index)]!;
      const dataDir = path.join(cfg.dir, 'iroh', 'blobs', 'data');
      const f = (await readdir(dataDir)).find((x) => x.startsWith(piece) && x.endsWith('.data'));
      if (!f) throw new Error(`no data file for piece ${piece}`);
      const fh = await openFile(path.join(dataDir, f), 'r+');
      try {
        const at = Math.floor((await stat(path.join(dataDir, f))).size / 2);
        const b = Buffer.alloc(1);
        await fh.read(b, 0, 1, at);
        b[0] = b[0]! ^ 0xff;
        await fh.write(b, 0, 1, at);
      } finally {
        await fh.close();
      }
      return { piece };
    },
    flush: async () => {
      await publisher.flush();
      await view?.load();
      return {};
    },
    transfers: async () => ({ transfers: prefetcher.transfers() }),
    rate: async (c) => {
      limiter.setRate((c.bytesPerSec as number | null | undefined) ?? null);
      return {};
    },
    shutdown: async () => {
      setTimeout(() => void stop(0), 10);
      return {};
    },
  };

  let stopping = false;
  async function stop(code: number): Promise<void> {
    if (stopping) return;
    stopping = true;
    publisher.stop();
    cache.stop();
    await store.flush().catch(() => {});
    await iroh.node.shutdown().catch(() => {});
    process.exit(code);
  }

  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    let c: Cmd;
    try {
      c = JSON.parse(line) as Cmd;
    } catch {
      return;
    }
    const op = ops[c.op];
    if (!op) return send({ id: c.id, ok: false, error: `unknown op ${c.op}` });
    op(c).then(
      (r) => send({ ...r, id: c.id, ok: true }),
      (e: unknown) => send({ id: c.id, ok: false, error: (e as Error).message, name: (e as Error).name }),
    );
  });
  rl.on('close', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
  send({ event: 'ready', nodeId: self, addresses, author, port: state.port });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runImagesNode(JSON.parse(process.argv[2] ?? '{}') as ImagesNodeConfig).catch((e: unknown) => {
    log('images node failed', { err: (e as Error).stack ?? String(e) });
    process.exit(1);
  });
}
