import { readFile, rename, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import type { Connection, NodeAddr } from '@number0/iroh';
import { Registry } from 'prom-client';
import { blake3File } from '../../src/images/hash.js'; // only this: the child loads as little as it needs
import {
  ALPN,
  FrameWriter,
  P2PMetrics,
  P2PNetwork,
  ReplicatedDoc,
  connectWithTimeout,
  downloadBlob,
  readFrames,
  serveRpc,
  shareFile,
  withTimeout,
  type Alpn,
  type DocEvent,
  type PeerAddress,
} from '../../src/p2p/index.js';
import { ClusterDocPublisher, ClusterDocView, StatusView, StatusWriter, follow } from '../../src/sync/index.js';

// One Blixard P2P node in its own process, for multi-process tests and benchmarks: a persistent
// Iroh node (fixed secret key and UDP port on 127.0.0.1, so a restarted node keeps its id and is
// found where it was), the protocol router with an allowlist, the peer manager, the Raft
// transport and RPC server on their ALPNs, documents with their views, and blob transfer.
//
//   node dist/test/helpers/p2p-node.js '{"dir":"/tmp/x","secretKey":"<64 hex>","port":45000}'
//
// It prints {"event":"ready",...} once serving, then answers every JSON line on stdin
// ({"id":1,"op":"health"}) with one JSON line ({"id":1,"ok":true,...} or {"id":1,"ok":false,
// "error":"..."}). Commands run concurrently. What a restart must remember (allowlist, peers,
// document tickets, author map) is kept in <dir>/harness.json, so a node killed with SIGKILL and
// started again on the same dir resumes by itself, as a daemon would. Logs go to stderr. The node
// exits when stdin closes (its parent is gone).

export interface P2PNodeConfig {
  dir: string;
  /** 32 bytes, hex. */
  secretKey: string;
  port: number;
  name?: string;
  pingIntervalMs?: number;
  deadAfterMs?: number;
  connectTimeoutMs?: number;
  backoff?: { baseMs: number; maxMs: number };
}

export type DocKind = 'cluster' | 'status';

interface Persisted {
  allow: string[];
  authors: Record<string, string>;
  peers: PeerAddress[];
  docs: { name: string; kind: DocKind; id: string; ticket: string }[];
}

interface OpenDoc {
  name: string;
  kind: DocKind;
  doc: ReplicatedDoc;
  cluster?: ClusterDocView;
  status?: StatusView;
  publisher?: ClusterDocPublisher;
  /** What the publisher last made the document say (for merged publishes). */
  current: Map<string, unknown>;
  joinedAt: number;
  /** key -> ms from the value's stamp (writer's wall clock) to this view seeing it. */
  watched?: { prefix: string; field: string; seen: Map<string, number> };
  /** Keys this view reported as changed, with when (for catch-up checks). */
  events: number;
}

type Cmd = { id: number; op: string; [k: string]: unknown };

const wallMs = () => performance.timeOrigin + performance.now();

function log(msg: string, extra: Record<string, unknown> = {}): void {
  process.stderr.write(`${JSON.stringify({ t: new Date().toISOString(), msg, ...extra })}\n`);
}

function send(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v))}\n`);
}

export async function runP2PNode(cfg: P2PNodeConfig): Promise<void> {
  await mkdir(cfg.dir, { recursive: true });
  const stateFile = path.join(cfg.dir, 'harness.json');
  const state: Persisted = await readFile(stateFile, 'utf8')
    .then((t) => JSON.parse(t) as Persisted)
    .catch(() => ({ allow: [], authors: {}, peers: [], docs: [] }));
  let saving: Promise<void> = Promise.resolve();
  const save = () =>
    (saving = saving.then(async () => {
      await writeFile(`${stateFile}.tmp`, JSON.stringify(state));
      await rename(`${stateFile}.tmp`, stateFile);
    }));

  const registry = new Registry();
  const metrics = new P2PMetrics(registry);
  const allow = new Set(state.allow);
  const refused: { alpn: Alpn; remote: string; why: string }[] = [];
  // The daemon's own P2P network (router and admission, peer health, Raft transport, RPC client),
  // with an allowlist the test sets instead of the cluster's admission.
  const net = await P2PNetwork.start({
    dir: path.join(cfg.dir, 'iroh'),
    secretKey: Buffer.from(cfg.secretKey, 'hex'),
    listen: `127.0.0.1:${cfg.port}`,
    discovery: 'none',
    admit: (id) => allow.has(id),
    metrics,
    peers: {
      pingIntervalMs: cfg.pingIntervalMs ?? 250,
      deadAfterMs: cfg.deadAfterMs ?? 1500,
      connectTimeoutMs: cfg.connectTimeoutMs ?? 1000,
      backoff: cfg.backoff ?? { baseMs: 100, maxMs: 1000 },
    },
    raft: { connectTimeoutMs: 1000 },
  });
  net.onRefused((alpn, remote, why) => refused.push({ alpn, remote, why }));
  const { iroh, peers, router } = net;
  const endpoint = () => net.endpoint();
  const self = await iroh.net.nodeId();
  const author = (await iroh.authors.default()).toString();
  peers.setPeers(state.peers);

  // The real Raft transport on blixard/raft/1; a probe message is answered over it.
  const raftFrom: Record<string, number> = {};
  const raft = net.transport;
  raft.onReceive((from, msg) => {
    raftFrom[from] = (raftFrom[from] ?? 0) + 1;
    const text = Buffer.from(msg).toString('utf8');
    if (text.startsWith('probe:')) raft.send(from, [Buffer.from(`pong:${text.slice(6)}`)]);
  });
  // The real RPC server on blixard/api/1, answering every call with who called.
  serveRpc(router, async (req, remote) => ({ status: 200, body: { pong: true, path: req.path, from: remote } }), { metrics });

  const docs = new Map<string, OpenDoc>();
  const docPeers = (): NodeAddr[] => state.peers.map((p) => ({ nodeId: p.nodeId, addresses: p.addresses }));

  async function openDoc(name: string, kind: DocKind, how: { create: true } | { id: string; ticket: string }): Promise<OpenDoc> {
    const joinedAt = performance.now();
    let od!: OpenDoc;
    const opts = { metrics, name, onError: (err: Error) => log('document event error', { doc: name, err: err.message }) };
    const viewOpts = { onError: (err: unknown) => log('view refresh failed', { doc: name, err: (err as Error).message }) };
    // As the daemon opens its documents (sync/follow.ts): the view gets the events from the first.
    const { doc, view } = await follow(
      async (onEvent) => {
        if (!('create' in how)) return ReplicatedDoc.openOrJoin(iroh, how.id, how.ticket, onEvent, { ...opts, peers: docPeers() });
        const d = await ReplicatedDoc.create(iroh, opts);
        await d.subscribe(onEvent);
        return d;
      },
      (d) => {
        od = { name, kind, doc: d, current: new Map(), joinedAt, events: 0 };
        const onChange = (keys: string[]) => changed(od, keys);
        if (kind === 'cluster') {
          od.cluster = new ClusterDocView(d, onChange, viewOpts);
          od.publisher = new ClusterDocPublisher(d);
        } else {
          od.status = new StatusView(d, (id) => state.authors[id], onChange, viewOpts);
        }
        return (od.cluster ?? od.status)!;
      },
    );
    await view.load();
    docs.set(name, od);
    // As a daemon does (NodeDocs.repair): content Iroh left missing is fetched from the peers.
    let repairing = false;
    setInterval(() => {
      if (repairing) return;
      repairing = true;
      void doc
        .fetchMissing(() => docPeers(), 2_000)
        .then((got) => (got.length > 0 ? (od.cluster ?? od.status)!.load() : undefined))
        .catch((err: unknown) => log('content repair failed', { doc: name, err: (err as Error).message }))
        .finally(() => (repairing = false));
    }, 1_000).unref();
    return od;
  }

  function changed(od: OpenDoc, keys: string[]): void {
    od.events += keys.length;
    const w = od.watched;
    if (!w || !od.cluster) return;
    const now = wallMs();
    for (const k of keys) {
      if (!k.startsWith(w.prefix) || w.seen.has(k)) continue;
      const v = od.cluster.get<Record<string, unknown>>(k);
      const stamp = v?.[w.field];
      if (typeof stamp === 'number') w.seen.set(k, now - stamp);
    }
  }

  const docOf = (name: unknown): OpenDoc => {
    const d = docs.get(String(name));
    if (!d) throw new Error(`no document named ${String(name)} on this node`);
    return d;
  };

  async function probe(alpn: Alpn, to: NodeAddr): Promise<{ served: boolean; detail: string }> {
    let conn: Connection;
    try {
      conn = await connectWithTimeout(endpoint(), to, alpn, 3000, `connect on ${alpn}`);
    } catch (e) {
      return { served: false, detail: (e as Error).message };
    }
    try {
      return { served: true, detail: await withTimeout(exchange(conn, alpn), 3000, `${alpn} exchange`) };
    } catch (e) {
      const reason = conn.closeReason() ?? (await withTimeout(conn.closed(), 1000, 'close').catch(() => null));
      return { served: false, detail: reason ?? (e as Error).message };
    } finally {
      try {
        conn.close(0n, Buffer.from('probe done'));
      } catch {
        // closed already
      }
    }
  }

  async function exchange(conn: Connection, alpn: Alpn): Promise<string> {
    const bi = await conn.openBi();
    const out = new FrameWriter(bi.send);
    const firstFrame = async (frames: AsyncGenerator<Buffer>) => {
      for await (const f of frames) return f;
      throw new Error(`the peer sent nothing (${conn.closeReason() ?? 'stream ended'})`);
    };
    if (alpn === ALPN.peer) {
      const ping = Buffer.alloc(4);
      ping.writeUInt32BE(0xbeef, 0);
      await out.write(ping);
      const pong = await firstFrame(readFrames(bi.recv));
      return `pong ${pong.readUInt32BE(0).toString(16)}`;
    }
    if (alpn === ALPN.api) {
      await out.write(Buffer.from(JSON.stringify({ method: 'GET', path: '/v1/probe' })));
      await out.finish();
      return (await firstFrame(readFrames(bi.recv))).toString('utf8');
    }
    // Raft: the answer comes back on a stream the peer's transport opens on this connection.
    const nonce = Math.random().toString(36).slice(2);
    await out.write(Buffer.from(`probe:${nonce}`));
    const back = await conn.acceptBi();
    const pong = (await firstFrame(readFrames(back.recv))).toString('utf8');
    if (pong !== `pong:${nonce}`) throw new Error(`unexpected raft answer ${pong}`);
    return pong;
  }

  const handlers: Record<string, (c: Cmd) => Promise<Record<string, unknown>>> = {
    health: async () => ({ nodeId: self, peers: peers.list(), refused, raftFrom, docs: [...docs.keys()] }),
    allow: async (c) => {
      allow.clear();
      for (const id of c.nodeIds as string[]) allow.add(id);
      state.allow = [...allow];
      await save();
      return {};
    },
    authors: async (c) => {
      state.authors = { ...(c.map as Record<string, string>) };
      await save();
      for (const d of docs.values()) await d.status?.load();
      return {};
    },
    peers: async (c) => {
      state.peers = c.list as PeerAddress[];
      peers.setPeers(state.peers);
      await save();
      return {};
    },
    docCreate: async (c) => {
      const name = String(c.name);
      const od = await openDoc(name, c.kind as DocKind, { create: true });
      const read = await od.doc.ticket('Read');
      const write = await od.doc.ticket('Write');
      // This node re-opens it after a restart (the write ticket names the namespace secret).
      state.docs = [...state.docs.filter((d) => d.name !== name), { name, kind: od.kind, id: od.doc.id, ticket: write }];
      await save();
      return { docId: od.doc.id, read, write };
    },
    docJoin: async (c) => {
      const name = String(c.name);
      const t0 = performance.now();
      const od = await openDoc(name, c.kind as DocKind, { id: String(c.docId), ticket: String(c.ticket) });
      state.docs = [...state.docs.filter((d) => d.name !== name), { name, kind: od.kind, id: od.doc.id, ticket: String(c.ticket) }];
      await save();
      return { docId: od.doc.id, ms: performance.now() - t0 };
    },
    publish: async (c) => {
      const od = docOf(c.doc);
      if (!od.publisher) throw new Error(`${od.name} is not a cluster document`);
      const entries = new Map(Object.entries(c.entries as Record<string, unknown>));
      if (typeof c.stamp === 'string') {
        const now = wallMs();
        for (const [k, v] of entries) entries.set(k, { ...(v as object), [c.stamp]: now });
      }
      const next = c.merge ? new Map([...od.current, ...entries]) : entries;
      const t0 = performance.now();
      const r = await od.publisher.publish(next, Number(c.rev));
      od.current = next;
      return { ...r, ms: performance.now() - t0 };
    },
    get: async (c) => {
      const od = docOf(c.doc);
      const v = od.cluster!.get(String(c.key));
      return { found: v !== undefined, value: v ?? null, rev: od.cluster!.rev };
    },
    list: async (c) => {
      const od = docOf(c.doc);
      await od.cluster!.settled();
      return { entries: od.cluster!.list(String(c.prefix ?? '')), rev: od.cluster!.rev, size: od.cluster!.size };
    },
    waitCount: async (c) => {
      // Until the view holds `count` live keys under `prefix`; ms counted from the join.
      const od = docOf(c.doc);
      const end = Date.now() + Number(c.timeoutMs ?? 60_000);
      for (;;) {
        const n = od.cluster ? od.cluster.size : od.status!.size;
        if (n >= Number(c.count)) return { ms: performance.now() - od.joinedAt, size: n, refresh: od.cluster?.refreshStats };
        if (Date.now() > end) throw new Error(`${od.name}: ${n} of ${String(c.count)} entries after ${String(c.timeoutMs ?? 60_000)} ms`);
        await new Promise((r) => setTimeout(r, 5));
      }
    },
    watch: async (c) => {
      docOf(c.doc).watched = { prefix: String(c.prefix), field: String(c.field ?? 't'), seen: new Map() };
      return {};
    },
    watched: async (c) => ({ seen: Object.fromEntries(docOf(c.doc).watched?.seen ?? []) }),
    statusSet: async (c) => {
      const od = docOf(c.doc);
      await new StatusWriter(od.doc, String(c.nodeId ?? self)).set(String(c.sub), c.value);
      return {};
    },
    statusView: async (c) => {
      const od = docOf(c.doc);
      await od.status!.settled();
      const nodes: Record<string, { key: string; value: unknown }[]> = {};
      for (const id of od.status!.nodes()) nodes[id] = od.status!.list(id);
      return { nodes, forged: od.status!.forged };
    },
    raw: async (c) => {
      // Every author's entry under the prefix (not one per key): what Iroh synced here, before
      // any view judged it.
      const d = docOf(c.doc).doc;
      const out: { key: string; author: string; value: unknown }[] = [];
      for (const a of new Set([...Object.values(state.authors), author])) {
        for (const e of await d.list(String(c.prefix ?? ''), { trust: (x) => x === a })) out.push({ key: e.key, author: e.author, value: e.value });
      }
      return { entries: out };
    },
    share: async (c) => {
      const t0 = performance.now();
      const r = await shareFile(iroh, String(c.file));
      return { ...r, ms: performance.now() - t0 };
    },
    download: async (c) => {
      const providers = c.providers as NodeAddr[];
      const hash = String(c.hash);
      if (c.raw) {
        // iroh-blobs alone: no probe, no progress bookkeeping, no status check.
        const m = await import('@number0/iroh');
        const t0 = performance.now();
        await new Promise<void>((resolve, reject) => {
          iroh.blobs
            .download(m.Hash.fromString(hash.replace(/^blake3:/, '')).toString(), new m.BlobDownloadOptions(m.BlobFormat.Raw, providers, m.SetTagOption.auto()), (err, p) => {
              if (err) reject(err);
              else if (p.allDone) resolve();
            })
            .then(() => resolve(), reject);
        });
        return { ms: performance.now() - t0 };
      }
      const t0 = performance.now(); // timed like the raw download: the whole call
      const r = await downloadBlob(iroh, hash, providers, { metrics, connectTimeoutMs: Number(c.connectTimeoutMs ?? 1000) });
      return { provider: r.provider, bytes: r.bytes, ms: performance.now() - t0, skipped: r.skipped };
    },
    deleteBlob: async (c) => {
      // So a benchmark can fetch the same blob again (Iroh deletes at once; the tag stays, harmless).
      const h = String(c.hash).replace(/^blake3:/, '');
      await iroh.blobs.deleteBlob(h);
      return { status: (await iroh.blobs.status(h)).type };
    },
    export: async (c) => {
      const file = String(c.file);
      await iroh.blobs.writeToPath(String(c.hash).replace(/^blake3:/, ''), file);
      return { ...(await blake3File(file)) };
    },
    connect: async (c) => probe(c.alpn as Alpn, c.to as NodeAddr),
    metrics: async () => ({ text: await registry.metrics() }),
    shutdown: async () => {
      setTimeout(() => void stop(0), 10);
      return {};
    },
  };

  let stopping = false;
  async function stop(code: number): Promise<void> {
    if (stopping) return;
    stopping = true;
    await raft.close().catch(() => {});
    await saving.catch(() => {});
    await withTimeout(net.stop(), 5000, 'network stop').catch(() => {});
    process.exit(code);
  }

  // Re-open what this node had before a restart: it catches up with its peers by itself.
  const restored: string[] = [];
  for (const d of state.docs) {
    await openDoc(d.name, d.kind, { id: d.id, ticket: d.ticket });
    restored.push(d.name);
  }

  const addr = await iroh.net.nodeAddr();
  send({ event: 'ready', nodeId: self, addresses: addr.addresses ?? [], author, restored });

  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (!line.trim()) return;
    let cmd: Cmd;
    try {
      cmd = JSON.parse(line) as Cmd;
    } catch {
      send({ id: null, ok: false, error: `not JSON: ${line.slice(0, 80)}` });
      return;
    }
    const h = handlers[cmd.op];
    if (!h) {
      send({ id: cmd.id, ok: false, error: `unknown op ${cmd.op}` });
      return;
    }
    h(cmd).then(
      (r) => send({ ...r, id: cmd.id, ok: true }),
      (e: unknown) => send({ id: cmd.id, ok: false, error: (e as Error)?.message ?? String(e) }),
    );
  });
  rl.on('close', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const arg = process.argv[2];
  if (!arg) {
    process.stderr.write('usage: node dist/test/helpers/p2p-node.js \'{"dir":...,"secretKey":"<hex>","port":N}\'\n');
    process.exit(2);
  }
  runP2PNode(JSON.parse(arg) as P2PNodeConfig).catch((e: unknown) => {
    log('p2p node failed', { err: (e as Error)?.stack ?? String(e) });
    process.exit(1);
  });
}
