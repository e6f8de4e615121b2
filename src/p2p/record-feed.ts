import { asRecord, type MapRecord } from './batched-map.js';
import type { DocEntry, DocEvent, ReplicatedDoc } from './doc.js';
import type { P2PMetrics } from './metrics.js';
import { Refresher, eachLimited, type DirtyKey, type ViewOptions } from './refresher.js';

// Follows the records (batches and snapshots, batched-map.ts) of a document and hands each one,
// once, to the view that merges them; after each round of reads it tells the view's listener
// which keys changed and sets the view's entry count. Which keys hold records and which authors
// to believe is the view's call (`accept`); reading them as events describe them is the
// Refresher's.

export interface RecordFeedOptions extends ViewOptions {
  /** Where records live: a whole-document read lists this prefix. */
  prefix: string;
  /** Whether the entry of `author` at `key` is a record to believe. */
  accept: (author: string, key: string) => boolean;
  /** A record read (each entry once): the keys whose value it changed. */
  apply: (author: string, key: string, rec: MapRecord) => string[];
  /** How many live keys the view holds (the entries metric). */
  size: () => number;
  /** The keys that changed in a round of reads, if any did. */
  onChange?: ((keys: string[]) => void) | undefined;
}

export class RecordFeed {
  /** Where the view's metrics go, and its label in them. */
  readonly metrics: P2PMetrics | undefined;
  readonly name: string;
  private readonly refresher: Refresher;
  /** author NUL key -> timestamp of the entry applied last: a whole-document read skips those. */
  private readonly applied = new Map<string, bigint>();
  private changed: string[] = [];

  constructor(
    private readonly doc: ReplicatedDoc,
    private readonly o: RecordFeedOptions,
  ) {
    this.metrics = o.metrics ?? doc.metrics;
    this.name = o.name ?? doc.label;
    this.refresher = new Refresher(
      (keys) => this.read(keys),
      (err) => {
        this.metrics?.errors.inc({ component: `doc-${this.name}` });
        o.onError?.(err);
      },
    );
  }

  event(e: DocEvent): void {
    this.refresher.event(e, (key, author) => this.o.accept(author, key));
  }

  /** Reads the whole document again (at start, and after a sync brought many entries at once). */
  async load(): Promise<void> {
    this.refresher.all();
    await this.refresher.idle();
  }

  /** Resolves once every event fed so far has been read. */
  idle(): Promise<void> {
    return this.refresher.idle();
  }

  get stats(): Readonly<Refresher['stats']> {
    return this.refresher.stats;
  }

  private take(e: DocEntry<unknown>): void {
    const id = `${e.author}\0${e.key}`;
    const prev = this.applied.get(id);
    if (prev !== undefined && prev >= e.timestamp) return;
    const rec = asRecord(e.value);
    if (!rec) return;
    this.applied.set(id, e.timestamp);
    for (const k of this.o.apply(e.author, e.key, rec)) this.changed.push(k);
  }

  private async read(keys: DirtyKey[] | null): Promise<void> {
    const got: DocEntry<unknown>[] = [];
    if (keys === null) {
      const known = (key: string, author: string, timestamp: bigint) => this.applied.get(`${author}\0${key}`) === timestamp;
      got.push(...(await this.doc.list(this.o.prefix, { trust: this.o.accept, known, perAuthor: true })));
    } else {
      await eachLimited(keys, 16, async ({ key, authors, hints }) => {
        if (authors === null) got.push(...(await this.doc.entriesOf(key, { trust: this.o.accept, perAuthor: true })));
        else
          for (const a of authors) {
            if (!this.o.accept(a, key)) continue;
            const hint = hints?.get(a);
            const e = hint ? await this.doc.entryAt(a, key, hint) : await this.doc.getExact(a, key);
            if (e) got.push(e);
          }
      });
    }
    // Snapshots first, newest first: the records they cover are then skipped, not applied and undone.
    const rank = (e: DocEntry<unknown>) => {
      const r = asRecord(e.value);
      return r?.snapshot ? -r.seq : Infinity;
    };
    got.sort((a, b) => {
      const ra = rank(a);
      const rb = rank(b);
      return ra === rb ? 0 : ra < rb ? -1 : 1;
    });
    for (const e of got) this.take(e);
    this.metrics?.docEntries.set({ doc: this.name }, this.o.size());
    const changed = this.changed;
    this.changed = [];
    if (changed.length > 0) this.o.onChange?.(changed);
  }
}
