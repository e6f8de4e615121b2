import type { DocEntry, DocEvent, ReplicatedDoc } from './doc.js';

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

const byRev = (a: DocEntry<Published>, b: DocEntry<Published>) => a.value.rev > b.value.rev || (a.value.rev === b.value.rev && a.timestamp > b.timestamp);

export class ClusterDocPublisher {
  private published = new Map<string, string>(); // key -> JSON of the value last published
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
    let written = 0;
    let removed = 0;
    for (const [key, value] of entries) {
      const json = JSON.stringify(value);
      if (this.published.get(key) === json) continue;
      await this.doc.set(key, { rev, value } satisfies Published);
      this.published.set(key, json);
      written++;
    }
    for (const key of [...this.published.keys()]) {
      if (entries.has(key)) continue;
      await this.doc.set(key, { rev, deleted: true } satisfies Published);
      this.published.delete(key);
      removed++;
    }
    return { written, removed };
  }
}

/**
 * A node's live view of the cluster document. It loads everything once, then follows inserts;
 * `onChange` gets the keys that changed. Reads are from memory.
 */
export class ClusterDocView {
  private readonly entries = new Map<string, DocEntry<Published>>();
  private pending: Promise<void> = Promise.resolve();

  constructor(
    private readonly doc: ReplicatedDoc,
    private readonly onChange?: (keys: string[]) => void,
  ) {}

  /** Feed the document's events here (ReplicatedDoc.join/open/subscribe callback). */
  event(e: DocEvent): void {
    if (e.type === 'insert') this.refresh(e.key);
    else if (e.type === 'content-ready' || (e.type === 'sync-finished' && e.ok)) this.refresh('');
  }

  /** Reads the whole document again (at start, and after a sync brought many entries at once). */
  async load(): Promise<void> {
    this.refresh('');
    await this.pending;
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

  /** The highest log index seen in any entry: how fresh this view is. */
  get rev(): number {
    let r = 0;
    for (const e of this.entries.values()) r = Math.max(r, e.value.rev);
    return r;
  }

  private refresh(prefix: string): void {
    // Refreshes run one at a time, in order, so an older read never overwrites a newer one.
    this.pending = this.pending.then(async () => {
      const changed: string[] = [];
      for (const e of await this.doc.list<Published>(prefix, { better: byRev })) {
        const cur = this.entries.get(e.key);
        if (cur && !byRev(e, cur)) continue;
        this.entries.set(e.key, e);
        changed.push(e.key);
      }
      if (changed.length > 0) this.onChange?.(changed);
    }).catch(() => {});
  }
}
