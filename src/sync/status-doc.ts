import { MapWriter, MergedMap, RecordFeed, isRecordKey, type DocEvent, type ReplicatedDoc, type ViewOptions } from '../p2p/index.js';

// The status document: every node writes what it observes (SPEC section 1, step 7) as one map per
// node (sub-key -> value, e.g. vm/web -> its report), carried as batches and snapshots
// (batched-map.ts) under status/<node id>/ with its own author; seqs are the node's clock in µs,
// never going back within the map. Every admitted node can write to the document, so a reader
// believes an entry only when its author is the one committed for the node id its key names;
// anything else (a node writing under another's prefix) is ignored and counted.

export const STATUS_PREFIX = 'status/';

export function statusKey(nodeId: string, sub: string): string {
  return `${STATUS_PREFIX}${nodeId}/${sub}`;
}

/** The node id a status key names, or undefined for a key outside the layout. */
export function nodeOfKey(key: string): string | undefined {
  if (!key.startsWith(STATUS_PREFIX)) return undefined;
  const rest = key.slice(STATUS_PREFIX.length);
  const slash = rest.indexOf('/');
  return slash > 0 ? rest.slice(0, slash) : undefined;
}

/** A failed write is tried again after this, doubling up to RETRY_MAX_MS, until it lands or the writer closes. */
const RETRY_MS = 500;
const RETRY_MAX_MS = 8_000;

/**
 * Writes this node's map. Values set while a write is in flight go together in the next one
 * (one document entry for all of them, each key at its newest value), so a burst of reports costs
 * a few entries and a quiet node's report is written at once. Writes go one at a time: two in
 * flight could land in either order. A failed write is retried, each key with its newest value.
 */
export class StatusWriter {
  private readonly writer: MapWriter;
  private pending = new Map<string, unknown>(); // sub -> value (undefined: remove)
  private waiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  private flushing = false;
  private scheduled = false;
  private retry: NodeJS.Timeout | undefined;
  private failures = 0;
  private lastSeq = 0;
  private closed = false;

  constructor(
    doc: Pick<ReplicatedDoc, 'setJson' | 'deletePrefix'>,
    readonly nodeId: string,
    snapshotAfter?: number,
  ) {
    this.writer = new MapWriter(doc, statusKey(nodeId, ''), snapshotAfter);
  }

  /** Continues the map the document already holds for this node (after a restart). */
  seed(entries: [string, number, unknown][], seq: number): void {
    this.writer.seed(entries);
    this.lastSeq = Math.max(this.lastSeq, seq);
  }

  set(sub: string, value: unknown): Promise<void> {
    return this.queue(sub, value);
  }

  remove(sub: string): Promise<void> {
    return this.queue(sub, undefined);
  }

  /** Batches and snapshots written so far. */
  get stats(): Readonly<MapWriter['stats']> {
    return this.writer.stats;
  }

  /** No more writes or retries (the document is closing): what is still queued is given up. */
  close(): void {
    this.closed = true;
    clearTimeout(this.retry);
    const why = new Error('the status document is closed');
    for (const w of this.waiters) w.reject(why);
    this.waiters = [];
    this.pending.clear();
  }

  private queue(sub: string, value: unknown): Promise<void> {
    // A report after close (a VM stopping while the node shuts down) is not written: retried
    // against a closed document, it kept the event loop spinning and the process from exiting.
    if (this.closed) return Promise.reject(new Error('the status document is closed'));
    this.pending.set(sub, value);
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.schedule();
    return done;
  }

  private schedule(): void {
    if (this.closed || this.flushing || this.scheduled || this.retry) return;
    this.scheduled = true;
    // The reports of one burst (a reconcile pass, a wave of placements) gather first.
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.flushing || this.pending.size === 0) return;
    this.flushing = true;
    const changes = this.pending;
    const waiters = this.waiters;
    this.pending = new Map();
    this.waiters = [];
    // µs, never going back: a reader keeps the value with the highest seq.
    const seq = Math.max(Date.now() * 1000, this.lastSeq + 1);
    this.lastSeq = seq;
    try {
      await this.writer.write(changes, seq);
      this.failures = 0;
      for (const w of waiters) w.resolve();
    } catch (e) {
      for (const w of waiters) w.reject(e);
      if (!this.closed) {
        // Written again with the next attempt, unless a newer value for the key came meanwhile.
        for (const [sub, value] of changes) if (!this.pending.has(sub)) this.pending.set(sub, value);
        const delay = Math.min(RETRY_MAX_MS, RETRY_MS * 2 ** this.failures++);
        this.retry = setTimeout(() => {
          this.retry = undefined;
          void this.flush();
        }, delay);
        this.retry.unref();
      }
    } finally {
      this.flushing = false;
    }
    if (this.pending.size > 0) this.schedule();
  }
}

export class StatusView {
  /** node id -> its map, from its trusted author's records only. */
  private readonly maps = new Map<string, MergedMap>();
  private readonly feed: RecordFeed;
  /** Entries seen whose author does not own the node id their key names. */
  forged = 0;

  constructor(
    doc: ReplicatedDoc,
    /** The committed map: node id -> its document author id. */
    private readonly authorOf: (nodeId: string) => string | undefined,
    onChange?: (keys: string[]) => void,
    opts: ViewOptions = {},
  ) {
    this.feed = new RecordFeed(doc, {
      ...opts,
      prefix: STATUS_PREFIX,
      accept: (author, key) => {
        const id = nodeOfKey(key);
        return id !== undefined && isRecordKey(statusKey(id, ''), key) && this.authorOf(id) === author;
      },
      apply: (_author, key, rec) => {
        const id = nodeOfKey(key)!;
        let m = this.maps.get(id);
        if (!m) this.maps.set(id, (m = new MergedMap()));
        return m.apply(rec).map((sub) => statusKey(id, sub));
      },
      size: () => this.size,
      onChange,
    });
  }

  event(e: DocEvent): void {
    if (e.type === 'insert' && !this.trusted(e.author, e.key)) {
      this.forged++;
      this.feed.metrics?.docUntrusted.inc({ doc: this.feed.name });
      return;
    }
    this.feed.event(e);
  }

  async load(): Promise<void> {
    await this.feed.load();
  }

  /** Resolves once every event fed so far has been read. */
  settled(): Promise<void> {
    return this.feed.idle();
  }

  /** Values a node published under `sub` prefix (e.g. 'vm/'), keyed by the rest of the key. */
  list<T>(nodeId: string, sub = ''): { key: string; value: T }[] {
    return (this.maps.get(nodeId)?.list(sub) ?? []) as { key: string; value: T }[];
  }

  get<T>(nodeId: string, sub: string): T | undefined {
    return this.maps.get(nodeId)?.get(sub) as T | undefined;
  }

  nodes(): string[] {
    return [...this.maps.keys()].sort();
  }

  /** A node's map as its writer continues it: [sub, seq, value] entries and the highest seq seen. */
  mapOf(nodeId: string): { entries: [string, number, unknown][]; seq: number } {
    const m = this.maps.get(nodeId);
    return { entries: m?.entries() ?? [], seq: m?.seq ?? 0 };
  }

  /** How many believed entries (not removed) the view holds. */
  get size(): number {
    let n = 0;
    for (const m of this.maps.values()) n += m.size;
    return n;
  }

  private trusted(author: string, key: string): boolean {
    const nodeId = nodeOfKey(key);
    return nodeId !== undefined && this.authorOf(nodeId) === author;
  }
}
