import type { DocEntry, DocEvent, ReplicatedDoc } from './doc.js';
import type { P2PMetrics } from './metrics.js';
import { Refresher, eachLimited, wholeIsCheaper, type DirtyKey, type ViewOptions } from './refresher.js';

// The cluster document: the leader publishes committed desired state and placements into it, and
// every node (voter or worker) live-syncs it (SPEC section 1, step 6). Only voters hold its write
// capability, so every entry in it comes from a voter; leaders change, and their clocks may
// disagree, so each value carries the log index it was published at and readers keep, per key,
// the value with the highest index. A removal is a value too ({rev, deleted}), which orders like
// any other, where an Iroh tombstone would order only by wall clock.

export interface Published<T = unknown> {
  rev: number;
  value?: T;
  deleted?: true;
}

/** Document writes in flight at once while publishing (each key is written by one of them only). */
const PUBLISH_WIDTH = 32;

const byRev = (a: DocEntry<Published>, b: DocEntry<Published>) => a.value.rev > b.value.rev || (a.value.rev === b.value.rev && a.timestamp > b.timestamp);

export class ClusterDocPublisher {
  private published = new Map<string, string>(); // key -> JSON of the value last published
  // The store replaces a record when it changes, never edits it: a value that is the very object
  // published last time needs no JSON.stringify (what made each publish O(size of the state)).
  private lastRef = new Map<string, unknown>();
  private loaded = false;

  constructor(private readonly doc: ReplicatedDoc) {}

  /**
   * Makes the document say exactly `entries` (key -> value) as of log index `rev`: writes the
   * keys that changed and marks the ones that went. The first call reads what the document holds
   * (a new leader inherits the previous leader's entries).
   */
  async publish(entries: ReadonlyMap<string, unknown>, rev: number): Promise<{ written: number; removed: number }> {
    if (!this.loaded) {
      for (const e of await this.doc.list<Published>('', { better: byRev })) {
        if (!e.value.deleted) this.published.set(e.key, JSON.stringify(e.value.value));
      }
      this.loaded = true;
    }
    const gone = [...this.published.keys()].filter((key) => !entries.has(key));
    return this.putAll([...entries, ...gone.map((key): [string, unknown] => [key, undefined])], rev);
  }

  /**
   * Writes only `changes` (key -> value, undefined for a key that went) as of `rev`: after a full
   * publish, what the store says changed since is all that can differ.
   */
  async update(changes: ReadonlyMap<string, unknown>, rev: number): Promise<{ written: number; removed: number }> {
    if (!this.loaded) throw new Error('update before the first full publish');
    return this.putAll([...changes], rev);
  }

  /**
   * Writes distinct keys, several at a time: one write waits on a round trip into Iroh, and a
   * wave of 100 VMs is 200 keys, which one after another took a worker 1-2 s to hear of.
   */
  private async putAll(changes: [string, unknown][], rev: number): Promise<{ written: number; removed: number }> {
    let written = 0;
    let removed = 0;
    await eachLimited(changes, PUBLISH_WIDTH, async ([key, value]) => {
      if (await this.put(key, value, rev)) (value === undefined ? removed++ : written++);
    });
    return { written, removed };
  }

  /** Forgets what was published: another leader may have written since (read it again). */
  reset(): void {
    this.published.clear();
    this.lastRef.clear();
    this.loaded = false;
  }

  get ready(): boolean {
    return this.loaded;
  }

  /** Writes one key (a removal marker for undefined) unless the document already says it. */
  private async put(key: string, value: unknown, rev: number): Promise<boolean> {
    if (value === undefined) {
      if (!this.published.has(key)) return false;
      await this.doc.set(key, { rev, deleted: true } satisfies Published);
      this.published.delete(key);
      this.lastRef.delete(key);
      return true;
    }
    if (typeof value === 'object' && value !== null && this.lastRef.get(key) === value && this.published.has(key)) return false;
    const json = JSON.stringify(value);
    this.lastRef.set(key, value);
    if (this.published.get(key) === json) return false;
    await this.doc.set(key, { rev, value } satisfies Published);
    this.published.set(key, json);
    return true;
  }
}

/**
 * A node's live view of the cluster document. It loads everything once, then follows inserts;
 * `onChange` gets the keys that changed. Reads are from memory.
 */
export class ClusterDocView {
  private readonly entries = new Map<string, DocEntry<Published>>();
  private readonly refresher: Refresher;
  private readonly metrics: P2PMetrics | undefined;
  private readonly name: string;
  private live = 0;
  private maxRev = 0;

  constructor(
    private readonly doc: ReplicatedDoc,
    private readonly onChange?: (keys: string[]) => void,
    opts: ViewOptions = {},
  ) {
    this.metrics = opts.metrics ?? doc.metrics;
    this.name = opts.name ?? doc.label;
    this.refresher = new Refresher(
      (keys) => this.read(keys),
      (err) => {
        this.metrics?.errors.inc({ component: `doc-${this.name}` });
        opts.onError?.(err);
      },
    );
  }

  /** When a sync with a peer last completed (and its entries were read): how current this view is. */
  lastSyncAt = 0;

  /** Feed the document's events here (ReplicatedDoc.join/open/subscribe callback). */
  event(e: DocEvent): void {
    this.refresher.event(e);
    if (e.type === 'sync-finished' && e.ok) {
      const at = Date.now();
      void this.refresher.idle().then(() => {
        this.lastSyncAt = Math.max(this.lastSyncAt, at);
      });
    }
  }

  /** Reads the whole document again (at start, and after a sync brought many entries at once). */
  async load(): Promise<void> {
    this.refresher.all();
    await this.refresher.idle();
  }

  /** Resolves once every event fed so far has been read. */
  settled(): Promise<void> {
    return this.refresher.idle();
  }

  get<T>(key: string): T | undefined {
    const e = this.entries.get(key);
    return e && !e.value.deleted ? (e.value.value as T) : undefined;
  }

  /** Live values under a prefix, in key order. */
  list<T>(prefix: string): { key: string; value: T }[] {
    const out: { key: string; value: T }[] = [];
    for (const [key, e] of this.entries) if (key.startsWith(prefix) && !e.value.deleted) out.push({ key, value: e.value.value as T });
    return out.sort((a, b) => (a.key < b.key ? -1 : 1));
  }

  /** How many live (not removed) keys the view holds. */
  get size(): number {
    return this.live;
  }

  /** The highest log index seen in any entry: how fresh this view is. */
  get rev(): number {
    return this.maxRev;
  }

  /** Refresh work done so far (drains, whole-document reads, single-key reads). */
  get refreshStats(): Readonly<Refresher['stats']> {
    return this.refresher.stats;
  }

  private async read(keys: DirtyKey[] | null): Promise<void> {
    const changed: string[] = [];
    const take = (e: DocEntry<Published>) => {
      const cur = this.entries.get(e.key);
      if (cur && !byRev(e, cur)) return;
      this.entries.set(e.key, e);
      this.live += (e.value.deleted ? 0 : 1) - (cur && !cur.value.deleted ? 1 : 0);
      if (e.value.rev > this.maxRev) this.maxRev = e.value.rev;
      changed.push(e.key);
    };
    if (keys === null || wholeIsCheaper(keys.length, this.entries.size)) {
      const known = (key: string, author: string, timestamp: bigint) => {
        const cur = this.entries.get(key);
        return cur !== undefined && cur.author === author && cur.timestamp === timestamp;
      };
      for (const e of await this.doc.list<Published>('', { better: byRev, known })) take(e);
    } else {
      await eachLimited(keys, 16, async ({ key, authors, hints }) => {
        if (authors === null) (await this.doc.entriesOf<Published>(key, { better: byRev })).forEach(take);
        else
          for (const a of authors) {
            const hint = hints?.get(a);
            const e = hint ? await this.doc.entryAt<Published>(a, key, hint) : await this.doc.getExact<Published>(a, key);
            if (e) take(e);
          }
      });
    }
    this.metrics?.docEntries.set({ doc: this.name }, this.live);
    if (changed.length > 0) this.onChange?.(changed);
  }
}
