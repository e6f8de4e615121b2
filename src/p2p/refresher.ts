import type { DocEvent, EntryHint } from './doc.js';
import type { P2PMetrics } from './metrics.js';

// How the document views stay current without re-reading the whole document on every event. An
// event marks a key dirty, with the author who wrote it; one drain at a time reads what is dirty,
// so a burst of thousands of inserts (a node joining a big document) is read in a few batches and
// a read never races an older one. A key read by author is one indexed lookup. An entry whose
// content has not arrived is read when Iroh says its content is ready: that event names the
// content hash, which the insert event told us, so it too costs one lookup. The newest entry an
// event described for a key and author goes along as a hint: its content can be read by hash
// without looking the entry up again (what following a busy document costs most).

export interface ViewOptions {
  /** Entry counts and refresh errors go here; default: the document's metrics. */
  metrics?: P2PMetrics;
  /** Label of the document in metrics; default: the document's label. */
  name?: string;
  /** A refresh that failed (it is counted in metrics too); the next event or load retries. */
  onError?: (err: unknown) => void;
}

/** A key to read again: the entries of these authors, or of any author (null: a key-only lookup). */
export interface DirtyKey {
  key: string;
  authors: string[] | null;
  /** Per author, the newest entry an event described (absent: look it up). */
  hints?: ReadonlyMap<string, EntryHint>;
}

/** Reads the given keys, or everything when `keys` is null. */
export type ReadKeys = (keys: DirtyKey[] | null) => Promise<void>;

const ANY = '';

export class Refresher {
  /** key -> authors whose entry changed ('' = unknown author), each with the newest entry seen. */
  private dirty = new Map<string, Map<string, EntryHint | null>>();
  private full = false;
  /** Content hash -> [key, author, entry] of entries that arrived before their content. */
  private readonly waiting = new Map<string, [string, string, EntryHint | null][]>();
  private running: Promise<void> | null = null;
  /** Drains so far, how many asked for the whole document, and keys handed over (tests, benchmarks). */
  readonly stats = { drains: 0, fullReads: 0, keys: 0 };

  constructor(
    private readonly read: ReadKeys,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Feeds a document event: what it changes is read again (soon, once). */
  event(e: DocEvent, accept: (key: string, author: string) => boolean = () => true): void {
    if (e.type === 'insert') {
      if (!accept(e.key, e.author)) return;
      const hint = e.hash !== undefined && e.timestamp !== undefined && e.len !== undefined ? { hash: e.hash, timestamp: e.timestamp, len: e.len } : null;
      if (!e.contentReady && e.hash !== undefined) {
        let keys = this.waiting.get(e.hash);
        if (!keys) this.waiting.set(e.hash, (keys = []));
        keys.push([e.key, e.author, hint]);
        return;
      }
      this.key(e.key, e.author, hint);
    } else if (e.type === 'content-ready') {
      const keys = this.waiting.get(e.hash);
      if (!keys) return; // content of an entry this view was never told about, or already read
      this.waiting.delete(e.hash);
      for (const [k, author, hint] of keys) this.key(k, author, hint);
    } else if (e.type === 'sync-finished' && e.ok) {
      // A set reconciliation reports each entry it brought as an insert; reading everything
      // once more after it is the level-triggered safety net (cheap next to the sync itself).
      this.all();
    }
  }

  /** Reads `key` again: the entry of `author` (the one `hint` describes, if newest), or of every author. */
  key(key: string, author?: string, hint: EntryHint | null = null): void {
    let authors = this.dirty.get(key);
    if (!authors) this.dirty.set(key, (authors = new Map()));
    const a = author ?? ANY;
    const prev = authors.get(a);
    // Without a hint the entry is looked up, which finds the newest anyway.
    if (prev === undefined) authors.set(a, hint);
    else if (prev !== null && (hint === null || hint.timestamp > prev.timestamp)) authors.set(a, hint);
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
        const keys = this.full ? null : [...this.dirty].map(([key, a]): DirtyKey => (a.has(ANY) ? { key, authors: null } : { key, authors: [...a.keys()], hints: hintsOf(a) }));
        this.full = false;
        this.dirty.clear();
        this.stats.drains++;
        if (keys === null) this.stats.fullReads++;
        else this.stats.keys += keys.length;
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

function hintsOf(authors: Map<string, EntryHint | null>): Map<string, EntryHint> | undefined {
  let out: Map<string, EntryHint> | undefined;
  for (const [a, h] of authors) if (h) (out ??= new Map()).set(a, h);
  return out;
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
