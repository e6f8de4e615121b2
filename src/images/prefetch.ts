import { unlink } from 'node:fs/promises';
import type { NodeAddr } from '@number0/iroh';
import { HashMismatchError } from './blobs.js';
import type { Bitmap } from './bitmap.js';
import { DEFAULT_ENGINE, PieceDownload, type DownloadStats, type EngineConfig, type EngineEvent, type ProviderSet, type TransferProgress } from './download.js';
import { hexOf } from './hash.js';
import { holdingsOf, HOLDINGS_SUB, type Holding, type HoldingsPublisher, type StatusReader } from './holdings.js';
import { tags } from './iroh-blobs.js';
import type { Priority, TransferLimiter } from './limiter.js';
import type { ImageMetrics } from './metrics.js';
import { manifestProblem, parseHashSeq, type PieceManifest } from './pieces.js';
import type { ImageStore } from './store.js';

// Prefetch: the node's image downloads. `pull` is what the node reconciler calls (ImageAccess)
// for the images of a VM placed here; `warm` fills the cache in the background (--prefetch all).
// One download per image however many VMs wait for it, at the highest priority any of them asks.
//
// A download: learn the pieces (the collection a holder publishes next to its holdings in the
// status document, fetched from a holder), say at once that this node is fetching the image (its
// record, empty at first: other downloaders see it), fetch the pieces from every node that
// publishes some (download.ts), publishing each piece as it arrives, and check the whole-file
// BLAKE3 while pieces arrive in order. The image is usable (has() is true) only once that check
// passed; if it fails, everything fetched is removed and the collection is not trusted again.

export interface ImageAccessLike {
  has(hash: string): Promise<boolean>;
  pathFor(hash: string): Promise<string>;
  pull(hashes: string[], vm: string, onProgress: (bytes: number, total: number | null) => void): Promise<void>;
}

export interface PrefetcherOptions {
  self: string;
  store: ImageStore;
  /** The status document's view (trusted authors only); undefined until the documents open. */
  status: () => StatusReader | undefined;
  publisher: HoldingsPublisher;
  /** Where to reach a node over Iroh. */
  addressOf: (nodeId: string) => NodeAddr | undefined;
  limiter?: TransferLimiter;
  engine?: Partial<EngineConfig>;
  /** How long a download waits for a node to publish the image before it fails (callers retry). */
  findTimeoutMs?: number;
  /** How long fetching the collection (a small blob) from one holder may take. */
  rootTimeoutMs?: number;
  /** A partial record counts as a downloader at work for this long after it was written. */
  activeWindowMs?: number;
  metrics?: ImageMetrics;
  log?: { info(o: object, m?: string): void; warn(o: object, m?: string): void; debug?(o: object, m?: string): void };
  /** Wall clock (records carry wall-clock times). */
  now?: () => number;
}

export interface PullOptions {
  priority?: Priority;
  /** Write the file for hypervisors in the same pass (a VM waits for it). */
  materialize?: boolean;
  onProgress?: (p: TransferProgress) => void;
  vm?: string;
  signal?: AbortSignal;
}

export interface PullResult {
  hash: string;
  /** null: it was already here. */
  stats: DownloadStats | null;
  /** Whole-file check time left after the last piece arrived. */
  verifyTailMs: number;
  totalMs: number;
}

export interface TransferStatus {
  hash: string;
  priority: Priority;
  vms: string[];
  phase: 'finding' | 'fetching' | 'verifying';
  startedAt: string;
  bytes: number;
  total: number | null;
  pieces: number;
  piecesTotal: number | null;
  perProvider: Record<string, number>;
  stalls: number;
  hedges: number;
}

export class NoHoldersError extends Error {
  constructor(
    readonly hash: string,
    detail: string,
  ) {
    super(`no node publishes ${hash} (${detail})`);
    this.name = 'NoHoldersError';
  }
}

/** The pieces fetched do not make the announced image: refused, and removed. */
export class ImageRefusedError extends HashMismatchError {
  constructor(expected: string, actual: string, collection: string, from: string[]) {
    super(expected, actual);
    this.message = `the pieces published for ${expected} (collection ${collection.slice(0, 16)}.., from ${from.map((n) => n.slice(0, 10)).join(', ') || 'nobody'}) make ${actual}: image refused, nothing fetched is kept`;
    this.name = 'ImageRefusedError';
  }
}

interface Job {
  hash: string;
  priority: Priority;
  materialize: boolean;
  vms: Set<string>;
  listeners: Set<(p: TransferProgress) => void>;
  phase: TransferStatus['phase'];
  progress: TransferProgress | null;
  engine: PieceDownload | null;
  startedAt: number;
  promise: Promise<PullResult>;
  /** Wakes a wait for holders. */
  wake: () => void;
  cache: { at: number; set: ProviderSet } | null;
}

export class Prefetcher {
  private readonly jobs = new Map<string, Job>();
  /** Collections whose pieces did not make their image: never again. */
  private readonly refused = new Set<string>();
  private readonly pulled = new Set<string>();
  private readonly now: () => number;
  private readonly unsubscribe: () => void;
  private stopped = false;

  constructor(private readonly o: PrefetcherOptions) {
    this.now = o.now ?? Date.now;
    // What the store holds whole is what this node publishes; what leaves it is withdrawn.
    this.unsubscribe = o.store.subscribe((hash, img, m) => {
      if (img && m) o.publisher.full(m);
      else if (!img) o.publisher.remove(hash);
      this.refreshGauges();
    });
  }

  /** The node reconciler's ImageAccess. */
  access(): ImageAccessLike {
    return {
      has: (h) => this.o.store.has(h),
      pathFor: async (h) => {
        const file = await this.o.store.pathFor(h);
        if (!this.pulled.delete(h)) this.o.metrics?.cacheLookups.inc({ result: 'hit' });
        return file;
      },
      pull: (hashes, vm, onProgress) => this.pull(hashes, vm, onProgress),
    };
  }

  /** Fetches the images a VM needs (highest priority), with their files written out. */
  async pull(hashes: string[], vm: string, onProgress: (bytes: number, total: number | null) => void): Promise<void> {
    const latest = new Map<string, TransferProgress>();
    const report = () => {
      let bytes = 0;
      let total: number | null = 0;
      for (const h of hashes) {
        const p = latest.get(h);
        bytes += p?.bytes ?? 0;
        if (p) total = total === null ? null : total + p.total;
        else total = null;
      }
      onProgress(bytes, total);
    };
    await Promise.all(
      hashes.map(async (h) => {
        const r = await this.fetch(h, {
          priority: 'vm',
          materialize: true,
          vm,
          onProgress: (p) => {
            latest.set(h, p);
            report();
          },
        });
        if (r.stats) {
          this.pulled.add(h);
          this.o.metrics?.cacheLookups.inc({ result: 'miss' });
        }
      }),
    );
  }

  /** Warms the cache with these images, in the background, behind anything a VM waits for. */
  warm(hashes: Iterable<string>): void {
    for (const h of hashes) {
      if (this.stopped || this.o.store.hasComplete(h) || this.jobs.has(h)) continue;
      this.fetch(h, { priority: 'warm', materialize: false }).catch((e: unknown) => this.o.log?.debug?.({ image: h, err: (e as Error).message }, 'cache warming: not now'));
    }
  }

  /** Fetches one image (or joins the download under way). */
  fetch(hash: string, opts: PullOptions = {}): Promise<PullResult> {
    if (this.stopped) return Promise.reject(new Error('the prefetcher is stopped'));
    let job = this.jobs.get(hash);
    if (!job) {
      let wake: () => void = () => {};
      job = {
        hash,
        priority: opts.priority ?? 'vm',
        materialize: opts.materialize ?? false,
        vms: new Set(),
        listeners: new Set(),
        phase: 'finding',
        progress: null,
        engine: null,
        startedAt: this.now(),
        promise: null as unknown as Promise<PullResult>,
        wake: () => wake(),
        cache: null,
      };
      const j = job;
      this.jobs.set(hash, j);
      this.o.metrics?.inFlight.set(this.jobs.size);
      j.promise = this.run(j, (f) => (wake = f)).finally(() => {
        this.jobs.delete(hash);
        this.o.metrics?.inFlight.set(this.jobs.size);
      });
    } else {
      if (opts.priority === 'vm') job.priority = 'vm';
      if (opts.materialize) job.materialize = true;
    }
    if (opts.vm) job.vms.add(opts.vm);
    const j = job;
    const listener = opts.onProgress;
    if (listener) {
      j.listeners.add(listener);
      if (j.progress) listener(j.progress);
    }
    const out = j.promise.finally(() => {
      if (listener) j.listeners.delete(listener);
      if (opts.vm) j.vms.delete(opts.vm);
    });
    if (!opts.signal) return out;
    return Promise.race([
      out,
      new Promise<never>((_, reject) => {
        if (opts.signal!.aborted) reject(new Error('aborted'));
        opts.signal!.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
      }),
    ]);
  }

  /** The status document changed: downloads look at the holdings again. */
  holdingsChanged(): void {
    for (const j of this.jobs.values()) {
      j.cache = null;
      j.engine?.poke();
      j.wake();
    }
  }

  /**
   * Makes this node's records in the status document match its store: every image held whole is
   * published, and a record left from before (an image since removed, a download abandoned by a
   * previous run) is withdrawn. Call once the documents are open.
   */
  async publishHoldings(): Promise<void> {
    for (const img of this.o.store.list()) {
      if (img.state !== 'complete') continue;
      const m = await this.o.store.manifest(img.hash).catch(() => undefined);
      if (m) this.o.publisher.full(m);
    }
    const view = this.o.status();
    if (!view) return;
    for (const { key } of view.list<unknown>(this.o.self, HOLDINGS_SUB)) {
      const hash = `blake3:${key.slice(HOLDINGS_SUB.length)}`;
      if (!this.o.store.hasComplete(hash) && !this.jobs.has(hash)) this.o.publisher.remove(hash);
    }
    this.refreshGauges();
  }

  transfers(): TransferStatus[] {
    return [...this.jobs.values()].map((j) => ({
      hash: j.hash,
      priority: j.priority,
      vms: [...j.vms].sort(),
      phase: j.phase,
      startedAt: new Date(j.startedAt).toISOString(),
      bytes: j.progress?.bytes ?? 0,
      total: j.progress?.total ?? null,
      pieces: j.progress?.pieces ?? 0,
      piecesTotal: j.progress?.piecesTotal ?? null,
      perProvider: j.progress?.perProvider ?? {},
      stalls: j.progress?.stalls ?? 0,
      hedges: j.progress?.hedges ?? 0,
    }));
  }

  /** Whether a download of this image is under way (the cache leaves it alone). */
  fetching(hash: string): boolean {
    return this.jobs.has(hash);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe();
    await Promise.allSettled([...this.jobs.values()].map((j) => j.promise));
  }

  // ---- one download ----

  private async run(job: Job, setWake: (f: () => void) => void): Promise<PullResult> {
    const t0 = performance.now();
    const release = this.o.store.hold(job.hash);
    let out: string | null = null;
    let verifier: ReturnType<ImageStore['verifier']> | null = null;
    let manifest: PieceManifest | null = null;
    try {
      if (await this.o.store.has(job.hash)) return { hash: job.hash, stats: null, verifyTailMs: 0, totalMs: performance.now() - t0 };
      manifest = await this.resume(job.hash);
      if (!manifest) manifest = await this.find(job, setWake);
      const m = manifest;
      await this.o.store.beginPartial(m);
      // Pieces of this image removed here a moment ago (cache eviction) must not be fetched
      // into files the store is still about to delete; wait here, not in attempts that a wait
      // would make look stalled.
      await this.o.store.blobs.settle(m.pieces);
      const have = await this.o.store.localPieces(m);
      this.o.publisher.partial(m, have);
      out = job.materialize ? this.o.store.tmpFileFor(job.hash) : null;
      verifier = this.o.store.verifier(m, out);
      for (const i of have.indexes()) verifier.ready(i);
      job.phase = 'fetching';
      const emit = (p: TransferProgress) => {
        job.progress = p;
        for (const l of job.listeners) l(p);
      };
      const engine = new PieceDownload({
        manifest: m,
        self: this.o.self,
        blobs: this.o.store.blobs,
        providers: () => this.providers(job, m),
        ...(this.o.limiter ? { limiter: this.o.limiter } : {}),
        priority: () => job.priority,
        config: { ...DEFAULT_ENGINE, ...this.o.engine },
        have,
        onPiece: (i) => {
          have.set(i);
          this.o.publisher.partial(m, have);
          verifier!.ready(i);
        },
        onProgress: emit,
        onEvent: (e) => this.event(job, e),
      });
      job.engine = engine;
      const stats = await engine.run();
      job.phase = 'verifying';
      emit(engine.progress());
      const tv = performance.now();
      const got = await verifier.finish();
      const verifyTailMs = performance.now() - tv;
      this.o.metrics?.verifySeconds.observe(verifyTailMs / 1000);
      if (got.hash !== job.hash) {
        this.refused.add(m.collection);
        this.o.metrics?.verifyFailures.inc();
        const from = Object.keys(stats.perProvider);
        if (out) await unlink(out).catch(() => {});
        out = null;
        await this.o.store.remove(job.hash, { force: true });
        this.o.publisher.remove(job.hash);
        throw new ImageRefusedError(job.hash, got.hash, m.collection, from);
      }
      await this.o.store.completePartial(m);
      if (out) {
        // `materialize` may have been asked for after the pieces started: the verifier wrote it.
        await this.o.store.installFile(job.hash, out);
        out = null;
      }
      for (const [peer, s] of Object.entries(stats.perProvider)) {
        this.o.metrics?.bytesFromPeer.inc({ peer }, s.bytes);
        this.o.metrics?.pieces.inc({ peer }, s.pieces);
      }
      const totalMs = performance.now() - t0;
      this.o.metrics?.pulls.inc({ result: 'ok', priority: job.priority });
      this.o.metrics?.pullSeconds.observe({ priority: job.priority }, totalMs / 1000);
      this.o.log?.info(
        { image: job.hash, ms: Math.round(totalMs), bytes: stats.bytesReceived, fromPeers: Object.fromEntries(Object.entries(stats.perProvider).map(([k, v]) => [k.slice(0, 10), v.bytes])), stalls: stats.stalls, hedges: stats.hedges },
        'image fetched and verified',
      );
      return { hash: job.hash, stats, verifyTailMs, totalMs };
    } catch (e) {
      this.o.metrics?.pulls.inc({ result: 'failed', priority: job.priority });
      await verifier?.abort();
      if (out) await unlink(out).catch(() => {});
      // An interrupted download keeps its pieces (resumed next time) but no longer says it is fetching.
      if (manifest && !this.o.store.hasComplete(job.hash)) {
        const have = await this.o.store.localPieces(manifest).catch(() => null);
        if (have && have.count > 0 && this.o.store.get(job.hash)) this.o.publisher.partial(manifest, have);
        else this.o.publisher.remove(job.hash);
      }
      throw e;
    } finally {
      release();
    }
  }

  /** The manifest of a download this node started before (its collection root is here). */
  private async resume(hash: string): Promise<PieceManifest | null> {
    const img = this.o.store.partial(hash);
    if (!img || this.refused.has(img.collection)) return null;
    return (await this.o.store.manifest(hash).catch(() => undefined)) ?? null;
  }

  /** Finds who publishes the image and fetches its collection root from one of them. */
  private async find(job: Job, setWake: (f: () => void) => void): Promise<PieceManifest> {
    const deadline = this.now() + (this.o.findTimeoutMs ?? 10_000);
    const tried = new Map<string, string>();
    for (;;) {
      const view = this.o.status();
      const holdings = view ? holdingsOf(view, job.hash).filter((h) => h.nodeId !== this.o.self && !this.refused.has(h.collection)) : [];
      // Prefer the collection most nodes hold whole (one image, one piece layout in practice).
      const groups = new Map<string, Holding[]>();
      for (const h of holdings) groups.set(h.collection, [...(groups.get(h.collection) ?? []), h]);
      const ranked = [...groups.entries()].sort(([, a], [, b]) => score(b) - score(a));
      for (const [collection, hs] of ranked) {
        const ordered = [...hs].sort((a, b) => (a.have === 'all' ? 0 : 1) - (b.have === 'all' ? 0 : 1) || b.at - a.at);
        for (const h of ordered) {
          const addr = this.o.addressOf(h.nodeId);
          if (!addr) {
            tried.set(h.nodeId, 'address unknown');
            continue;
          }
          try {
            const m = await this.fetchRoot(job.hash, collection, h, addr);
            return m;
          } catch (e) {
            tried.set(h.nodeId, (e as Error).message.split('\n')[0]!);
          }
        }
      }
      if (this.now() >= deadline || this.stopped) {
        const detail = !view
          ? 'the status document is not open yet'
          : holdings.length === 0
            ? 'no holdings in the status document'
            : [...tried].map(([n, why]) => `${n.slice(0, 10)}: ${why}`).join('; ');
        throw new NoHoldersError(job.hash, detail);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 500);
        setWake(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  private async fetchRoot(hash: string, collection: string, h: Holding, addr: NodeAddr): Promise<PieceManifest> {
    const blobs = this.o.store.blobs;
    if (!(await blobs.isComplete(collection))) {
      const ms = this.o.rootTimeoutMs ?? 5_000;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        blobs.download(collection, addr, tags.image(hexOf(hash)), () => {}),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no collection within ${ms} ms`)), ms);
        }),
      ]).finally(() => clearTimeout(timer));
      if (!(await blobs.isComplete(collection))) throw new Error('the collection did not arrive');
    }
    const children = parseHashSeq(await blobs.read(collection));
    const m: PieceManifest = { hash, size: h.size, pieceSize: h.pieceSize, collection, pieces: children.slice(1) };
    const problem = manifestProblem(m);
    if (problem) {
      this.refused.add(collection);
      throw new Error(`collection ${collection.slice(0, 16)}..: ${problem}`);
    }
    return m;
  }

  private providers(job: Job, m: PieceManifest): ProviderSet {
    const now = this.now();
    if (job.cache && now - job.cache.at < 1000) return job.cache.set;
    const view = this.o.status();
    const providers: ProviderSet['providers'] = [];
    const peersFetching: ProviderSet['peersFetching'] = [];
    const window = this.o.activeWindowMs ?? 20_000;
    for (const h of view ? holdingsOf(view, m.hash) : []) {
      if (h.nodeId === this.o.self || h.collection !== m.collection) continue;
      if (h.have !== 'all' && now - h.at < window) peersFetching.push({ nodeId: h.nodeId, pieces: h.have.count });
      const addr = this.o.addressOf(h.nodeId);
      if (!addr) continue;
      if (h.have !== 'all' && (h.have as Bitmap).count === 0) continue;
      providers.push({ nodeId: h.nodeId, addr, have: h.have });
    }
    const set = { providers, peersFetching };
    job.cache = { at: now, set };
    return set;
  }

  private event(job: Job, e: EngineEvent): void {
    if (e.type === 'stall') {
      this.o.metrics?.stalls.inc({ peer: e.provider });
      this.o.log?.warn({ image: job.hash, piece: e.index, peer: e.provider.slice(0, 10), suspectForMs: e.suspectForMs }, 'piece stalled: fetching it from another peer');
    } else if (e.type === 'start') {
      if (e.kind !== 'new') this.o.metrics?.hedges.inc({ kind: e.kind });
      this.o.log?.debug?.({ image: job.hash, piece: e.index, peer: e.provider.slice(0, 10), kind: e.kind }, 'piece started');
    }
    else if (e.type === 'failure') this.o.log?.debug?.({ image: job.hash, piece: e.index, peer: e.provider.slice(0, 10), why: e.why }, 'piece attempt failed');
    else if (e.type === 'piece') this.o.log?.debug?.({ image: job.hash, piece: e.index, peer: e.provider.slice(0, 10), ms: Math.round(e.ms) }, 'piece arrived');
  }

  private refreshGauges(): void {
    if (!this.o.metrics) return;
    const imgs = this.o.store.list().filter((i) => i.state === 'complete');
    this.o.metrics.cacheImages.set(imgs.length);
    this.o.metrics.cacheBytes.set({ kind: 'pieces' }, this.o.store.list().reduce((n, i) => n + i.size, 0));
  }
}

function score(hs: Holding[]): number {
  return hs.filter((h) => h.have === 'all').length * 1000 + hs.length;
}
