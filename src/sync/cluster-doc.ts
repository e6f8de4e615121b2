import { MapWriter, MergedMap, RecordFeed, isRecordKey, type DocEvent, type ReplicatedDoc, type ViewOptions } from '../p2p/index.js';

// The cluster document: the leader publishes committed desired state and placements into it, and
// every node (voter or worker) live-syncs it (SPEC section 1, step 6). Only voters hold its write
// capability, so every entry in it comes from a voter. It carries one map (key -> value) as
// batches and snapshots (batched-map.ts) whose seq is the Raft log index they were published at:
// leaders change, and their clocks may disagree, but the state at an index is the same for all.

export class ClusterDocPublisher {
  private readonly writer: MapWriter;
  private loaded = false;

  constructor(doc: ReplicatedDoc, snapshotAfter?: number) {
    this.writer = new MapWriter(doc, '', snapshotAfter);
  }

  /**
   * Makes the document say exactly `entries` (key -> value) as of log index `rev`, in one
   * snapshot: a new leader's first pass, or one after a failed pass.
   */
  async publish(entries: ReadonlyMap<string, unknown>, rev: number): Promise<{ written: number; removed: number }> {
    const r = await this.writer.replace(entries, rev);
    this.loaded = true;
    return r;
  }

  /**
   * Writes only `changes` (key -> value, undefined for a key that went) as of `rev`, in one
   * batch: after a full publish, what the store says changed since is all that can differ.
   */
  async update(changes: ReadonlyMap<string, unknown>, rev: number): Promise<{ written: number; removed: number }> {
    if (!this.loaded) throw new Error('update before the first full publish');
    return this.writer.write(changes, rev);
  }

  /** Forgets what was published: another leader may have written since (the next pass is whole). */
  reset(): void {
    this.writer.clear();
    this.loaded = false;
  }

  get ready(): boolean {
    return this.loaded;
  }

  /** Batches and snapshots written so far. */
  get stats(): Readonly<MapWriter['stats']> {
    return this.writer.stats;
  }
}

/**
 * A node's live view of the cluster document. It loads everything once, then follows inserts;
 * `onChange` gets the keys that changed. Reads are from memory.
 */
export class ClusterDocView {
  private readonly map = new MergedMap();
  private readonly feed: RecordFeed;

  constructor(doc: ReplicatedDoc, onChange?: (keys: string[]) => void, opts: ViewOptions = {}) {
    this.feed = new RecordFeed(doc, {
      ...opts,
      prefix: '',
      accept: (_author, key) => isRecordKey('', key),
      apply: (_author, _key, rec) => this.map.apply(rec),
      size: () => this.map.size,
      onChange,
    });
  }

  /** When a sync with a peer last completed (and its entries were read): how current this view is. */
  lastSyncAt = 0;

  /** Feed the document's events here (ReplicatedDoc.join/open/subscribe callback). */
  event(e: DocEvent): void {
    this.feed.event(e);
    if (e.type === 'sync-finished' && e.ok) {
      const at = Date.now();
      void this.feed.idle().then(() => {
        this.lastSyncAt = Math.max(this.lastSyncAt, at);
      });
    }
  }

  /** Reads the whole document again (at start, and after a sync brought many entries at once). */
  async load(): Promise<void> {
    await this.feed.load();
  }

  /** Resolves once every event fed so far has been read. */
  settled(): Promise<void> {
    return this.feed.idle();
  }

  get<T>(key: string): T | undefined {
    return this.map.get(key) as T | undefined;
  }

  /** Live values under a prefix, in key order. */
  list<T>(prefix: string): { key: string; value: T }[] {
    return this.map.list(prefix) as { key: string; value: T }[];
  }

  /** How many live (not removed) keys the view holds. */
  get size(): number {
    return this.map.size;
  }

  /** The highest log index of any record seen: how fresh this view is. */
  get rev(): number {
    return this.map.seq;
  }

  /** Refresh work done so far (drains, whole-document reads, single-key reads). */
  get refreshStats(): Readonly<RecordFeed['stats']> {
    return this.feed.stats;
  }
}
