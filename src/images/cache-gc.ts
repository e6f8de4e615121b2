import { planEviction, type CacheEntry, type EvictionPlan } from './cache.js';
import type { ImageMetrics } from './metrics.js';
import { pieceLength } from './pieces.js';
import type { ImageStore } from './store.js';

// The image cache's executor: gathers what the store holds and what VMs here need, asks
// planEviction (cache.ts) what to drop, and drops it, checking again right before each removal
// (a VM may have been placed here meanwhile). Runs on an interval and when kicked (after a
// download or an upload), one pass at a time.

export interface ImageCacheOptions {
  store: ImageStore;
  /** --image-cache-size in bytes; null: no limit (files of unused images still go). */
  limitBytes: number | null;
  /** The images (and initrds) of every VM placed on this node or still running here. */
  inUse: () => Iterable<string> | Promise<Iterable<string>>;
  /** Downloads under way (never touched). */
  fetching?: (hash: string) => boolean;
  intervalMs?: number;
  metrics?: ImageMetrics;
  log?: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
}

export interface CollectResult extends EvictionPlan {
  /** What was actually removed (a removal re-checked and skipped is not here). */
  droppedFiles: string[];
  evicted: string[];
}

export class ImageCache {
  private timer: NodeJS.Timeout | undefined;
  private soon: NodeJS.Timeout | undefined;
  private running: Promise<CollectResult> | null = null;
  private again = false;

  constructor(private readonly o: ImageCacheOptions) {}

  start(): void {
    this.timer = setInterval(() => this.kick(), this.o.intervalMs ?? 60_000);
    this.timer.unref();
    this.kick();
  }

  stop(): void {
    clearInterval(this.timer);
    clearTimeout(this.soon);
  }

  setLimit(limitBytes: number | null): void {
    this.o.limitBytes = limitBytes;
    this.kick();
  }

  /** A pass soon (coalesced). */
  kick(): void {
    if (this.soon) return;
    this.soon = setTimeout(() => {
      this.soon = undefined;
      this.collect().catch((e: unknown) => this.o.log?.warn({ err: (e as Error).message }, 'image cache pass failed'));
    }, 200);
    this.soon.unref();
  }

  /** One pass now (or the one running, then another). */
  async collect(): Promise<CollectResult> {
    if (this.running) {
      this.again = true;
      await this.running.catch(() => {});
      if (this.running) return this.running;
    }
    this.running = this.pass().finally(() => {
      this.running = null;
    });
    const r = await this.running;
    if (this.again) {
      this.again = false;
      return this.collect();
    }
    return r;
  }

  private async pass(): Promise<CollectResult> {
    const { store } = this.o;
    const inUse = new Set(await this.o.inUse());
    for (const h of inUse) store.touch(h); // in use now is used now
    const busy = (h: string) => store.busy(h) || (this.o.fetching?.(h) ?? false);
    const entries: CacheEntry[] = [];
    for (const img of store.list()) {
      let pieceBytes = img.size;
      if (img.state === 'partial') {
        const m = await store.manifest(img.hash).catch(() => undefined);
        if (m) {
          const have = await store.localPieces(m);
          pieceBytes = 0;
          for (const i of have.indexes()) pieceBytes += pieceLength(i, m.size, m.pieceSize);
        }
      }
      entries.push({ hash: img.hash, pieceBytes, fileBytes: await store.fileBytes(img.hash), lastUsed: img.lastUsed, inUse: inUse.has(img.hash), busy: busy(img.hash) });
    }
    const plan = planEviction(entries, this.o.limitBytes);
    const droppedFiles: string[] = [];
    const evicted: string[] = [];
    if (plan.dropFiles.length + plan.evict.length > 0) {
      // Look again right before acting: a VM placed here meanwhile keeps its image.
      const now = new Set(await this.o.inUse());
      for (const h of plan.dropFiles) {
        if (now.has(h) || busy(h)) continue;
        await store.dropFile(h);
        droppedFiles.push(h);
        this.o.metrics?.evictions.inc({ what: 'file' });
      }
      for (const h of plan.evict) {
        if (now.has(h) || busy(h)) continue;
        if (await store.remove(h)) {
          evicted.push(h);
          this.o.metrics?.evictions.inc({ what: 'image' });
        }
      }
      if (evicted.length > 0) this.o.log?.info({ evicted, before: plan.before, after: plan.after, limit: this.o.limitBytes }, 'image cache: removed least recently used images no VM here needs');
    }
    if (plan.over > 0) this.o.log?.warn({ over: plan.over, limit: this.o.limitBytes }, 'image cache over its limit with images VMs here need');
    if (this.o.metrics) {
      let pieces = 0;
      let files = 0;
      for (const e of entries) {
        if (evicted.includes(e.hash)) continue;
        pieces += e.pieceBytes;
        if (!droppedFiles.includes(e.hash)) files += e.fileBytes;
      }
      this.o.metrics.cacheBytes.set({ kind: 'pieces' }, pieces);
      this.o.metrics.cacheBytes.set({ kind: 'files' }, files);
      this.o.metrics.cacheImages.set(store.list().filter((i) => i.state === 'complete').length);
    }
    return { ...plan, droppedFiles, evicted };
  }
}
