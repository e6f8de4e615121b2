import type { DocEvent } from './doc.js';
import type { P2PMetrics } from './metrics.js';

// How the document views stay current without re-reading the whole document on every event. An
// event marks keys dirty; one drain at a time reads them (the whole document only when asked, or
// when most of it is dirty), so a burst of thousands of inserts (a node joining a big document)
// costs one read per key, and a read never races an older one. An entry whose content has not
// arrived is read when Iroh says its content is ready: that event names the content hash, which
// the insert event told us, so it too costs one read of one key.

export interface ViewOptions {
  /** Entry counts and refresh errors go here; default: the document's metrics. */
  metrics?: P2PMetrics;
  /** Label of the document in metrics; default: the document's label. */
  name?: string;
  /** A refresh that failed (it is counted in metrics too); the next event or load retries. */
  onError?: (err: unknown) => void;
}

/** Reads the given keys, or everything when `keys` is null. */
export type ReadKeys = (keys: string[] | null) => Promise<void>;

export class Refresher {
  private dirty = new Set<string>();
  private full = false;
  /** Content hash -> keys whose entry arrived before its content. */
  private readonly waiting = new Map<string, Set<string>>();
  private running: Promise<void> | null = null;
  /** Drains so far, and how many of them read everything (for tests and benchmarks). */
  readonly stats = { drains: 0, fullReads: 0, keyReads: 0 };

  constructor(
    private readonly read: ReadKeys,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Feeds a document event: what it changes is read again (soon, once). */
  event(e: DocEvent, accept: (key: string, author: string) => boolean = () => true): void {
    if (e.type === 'insert') {
      if (!accept(e.key, e.author)) return;
      if (!e.contentReady && e.hash !== undefined) {
        let keys = this.waiting.get(e.hash);
        if (!keys) this.waiting.set(e.hash, (keys = new Set()));
        keys.add(e.key);
        return;
      }
      this.key(e.key);
    } else if (e.type === 'content-ready') {
      const keys = this.waiting.get(e.hash);
      if (!keys) return; // content of an entry this view was never told about, or already read
      this.waiting.delete(e.hash);
      for (const k of keys) this.key(k);
    } else if (e.type === 'sync-finished' && e.ok) {
      // A set reconciliation reports each entry it brought as an insert; reading everything
      // once more after it is the level-triggered safety net (cheap next to the sync itself).
      this.all();
    }
  }

  key(key: string): void {
    this.dirty.add(key);
    this.kick();
  }

  all(): void {
    this.full = true;
    this.kick();
  }

  /** Resolves when every refresh asked for so far has been read. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private kick(): void {
    this.running ??= this.drain();
  }

  private async drain(): Promise<void> {
    // Let the events of the same burst gather first.
    await new Promise<void>((r) => setImmediate(r));
    try {
      while (this.full || this.dirty.size > 0) {
        const keys = this.full ? null : [...this.dirty];
        this.full = false;
        this.dirty.clear();
        this.stats.drains++;
        if (keys === null) this.stats.fullReads++;
        else this.stats.keyReads += keys.length;
        try {
          await this.read(keys);
        } catch (e) {
          this.onError(e);
        }
      }
    } finally {
      this.running = null;
    }
  }
}

/** Runs `fn` over `items`, at most `width` at a time. */
export async function eachLimited<T>(items: readonly T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}
