import { asRecord, type MapRecord } from './batched-map.js';
import type { DocEntry, DocEvent, ReplicatedDoc } from './doc.js';
import type { P2PMetrics } from './metrics.js';
import { Refresher, eachLimited, type DirtyKey, type ViewOptions } from './refresher.js';

// Follows the records (batches and snapshots, batched-map.ts) of a document and hands each one,
// once, to the view that merges them. Which keys hold records and which authors to believe is
// the view's call (`accept`); reading them as events describe them is the Refresher's.

export interface RecordFeedOptions extends ViewOptions {
  /** Where records live: a whole-document read lists this prefix. */
  prefix: string;
  /** Whether the entry of `author` at `key` is a record to believe. */
  accept: (author: string, key: string) => boolean;
  /** A record read (each entry once). */
  apply: (author: string, key: string, rec: MapRecord) => void;
  /** After each round of reads: the view reports what changed. */
  afterRead: () => void;
}

export class RecordFeed {
  private readonly refresher: Refresher;
  /** author NUL key -> timestamp of the entry applied last: a whole-document read skips those. */
  private readonly applied = new Map<string, bigint>();

  constructor(
    private readonly doc: ReplicatedDoc,
    private readonly o: RecordFeedOptions,
    metrics: P2PMetrics | undefined,
    name: string,
  ) {
    this.refresher = new Refresher(
      (keys) => this.read(keys),
      (err) => {
        metrics?.errors.inc({ component: `doc-${name}` });
        o.onError?.(err);
      },
    );
  }

  event(e: DocEvent): void {
    this.refresher.event(e, (key, author) => this.o.accept(author, key));
  }

  all(): void {
    this.refresher.all();
  }

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
    this.o.apply(e.author, e.key, rec);
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
    this.o.afterRead();
  }
}
