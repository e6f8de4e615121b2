// A map of string keys to JSON values carried in a document as a few entries rather than one per
// key. Every Iroh entry costs each node on the document a write, a content transfer and a read
// (measured: ~5 ms of CPU across a 3-node cluster per entry); a wave of 100 VMs wrote 500 of them.
// Here one write is one *batch* entry holding every key it changed, and now and then the writer
// puts the whole map in one *snapshot* entry and removes its batches with one prefix deletion, so
// the document stays as small as the map.
//
//   <prefix>snapshot         {seq, snapshot: true, entries: [[key, seq of its last change, value]]}
//   <prefix>batch/<seq hex>  {seq, entries: [[key, seq, value or null when removed]]}
//
// A reader keeps, per key, the value with the highest seq; a snapshot at S also says that a key it
// lacks was removed at or before S, and makes every record at or below S obsolete. That rule holds
// whatever order records arrive in, and whichever author wrote them, as long as seqs mean the same
// thing to every writer of the map: the Raft log index for the cluster document (any leader's
// state at an index is the same), the node's own clock for its status.

export interface MapRecord {
  seq: number;
  /** The whole map as of `seq`: keys it lacks were removed by then. */
  snapshot?: true;
  /** [key, seq of the key's last change, value]; null: removed (batches only). */
  entries: [string, number, unknown][];
}

export const SNAPSHOT_KEY = 'snapshot';
export const BATCH_PREFIX = 'batch/';

export function batchKey(prefix: string, seq: number): string {
  // Fixed width, so that keys sort by seq (2^53 fits 14 hex digits).
  return `${prefix}${BATCH_PREFIX}${seq.toString(16).padStart(14, '0')}`;
}

/** Whether `key` (under `prefix`) holds a record of a map. */
export function isRecordKey(prefix: string, key: string): boolean {
  if (!key.startsWith(prefix)) return false;
  const rest = key.slice(prefix.length);
  return rest === SNAPSHOT_KEY || rest.startsWith(BATCH_PREFIX);
}

/** Reads a record's content; undefined for anything that is not one (another version's layout). */
export function asRecord(v: unknown): MapRecord | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const r = v as Partial<MapRecord>;
  if (typeof r.seq !== 'number' || !Array.isArray(r.entries)) return undefined;
  return r as MapRecord;
}

/** The map as a reader sees it: pure, deterministic, fed records in any order. */
export class MergedMap {
  /** Seq of the newest snapshot applied: every record at or below it is obsolete. */
  private base = -Infinity;
  private maxSeq = 0;
  private live = 0;
  /** key -> its newest value (null: removed, remembered until a snapshot covers it). */
  private readonly values = new Map<string, { seq: number; value: unknown }>();

  /** Applies a record; returns the keys whose value changed. */
  apply(rec: MapRecord): string[] {
    if (rec.seq <= this.base) return [];
    if (rec.seq > this.maxSeq) this.maxSeq = rec.seq;
    const changed: string[] = [];
    const set = (key: string, seq: number, value: unknown) => {
      const cur = this.values.get(key);
      if (cur && cur.seq >= seq) return;
      if (cur === undefined && value === null) {
        this.values.set(key, { seq, value }); // a removal that may come before the value it removes
        return;
      }
      this.values.set(key, { seq, value });
      this.live += (value === null ? 0 : 1) - (cur && cur.value !== null ? 1 : 0);
      changed.push(key);
    };
    if (!rec.snapshot) {
      for (const [key, seq, value] of rec.entries) set(key, Math.min(seq, rec.seq), value ?? null);
      return changed;
    }
    this.base = rec.seq;
    const present = new Set<string>();
    for (const [key, seq, value] of rec.entries) {
      present.add(key);
      set(key, Math.min(seq, rec.seq), value ?? null);
    }
    for (const [key, cur] of this.values) {
      if (present.has(key) || cur.seq > rec.seq) continue;
      this.values.delete(key);
      if (cur.value !== null) {
        this.live--;
        changed.push(key);
      }
    }
    return changed;
  }

  get(key: string): unknown {
    const v = this.values.get(key);
    return v && v.value !== null ? v.value : undefined;
  }

  /** Live keys under `prefix`, in key order. */
  list(prefix: string): { key: string; value: unknown }[] {
    const out: { key: string; value: unknown }[] = [];
    for (const [key, v] of this.values) if (v.value !== null && key.startsWith(prefix)) out.push({ key, value: v.value });
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** Live entries with the seq each last changed at (what a writer continuing this map starts from). */
  entries(): [string, number, unknown][] {
    const out: [string, number, unknown][] = [];
    for (const [key, v] of this.values) if (v.value !== null) out.push([key, v.seq, v.value]);
    return out;
  }

  get size(): number {
    return this.live;
  }

  /** The highest seq of any record applied. */
  get seq(): number {
    return this.maxSeq;
  }
}

/** What a MapWriter needs of a document. */
export interface RecordSink {
  setJson(key: string, json: string): Promise<void>;
  deletePrefix(prefix: string): Promise<void>;
}

/** A snapshot is written once this many keys were changed since the last one (or the map's size, if larger). */
const SNAPSHOT_AFTER = 1024;

/**
 * Writes a map as batches and snapshots. Calls run one at a time, in call order (a batch must
 * not be overtaken by the snapshot and deletion that follow it).
 */
export class MapWriter {
  /** key -> [seq of its last change, JSON of its value]. */
  private readonly values = new Map<string, { seq: number; json: string }>();
  private sinceSnapshot = 0;
  private chain: Promise<unknown> = Promise.resolve();
  /** Snapshots and batches written (tests, metrics). */
  readonly stats = { batches: 0, snapshots: 0 };

  constructor(
    private readonly doc: RecordSink,
    private readonly prefix: string,
    private readonly snapshotAfter = SNAPSHOT_AFTER,
  ) {}

  /** Starts from what the document already holds (a restarted node continuing its own map). */
  seed(entries: Iterable<[string, number, unknown]>): void {
    this.values.clear();
    for (const [key, seq, value] of entries) this.values.set(key, { seq, json: JSON.stringify(value) });
    this.sinceSnapshot = this.values.size; // unknown batches may be left: the next compaction is due
  }

  /** Forgets everything (a new leader writes a whole snapshot first). */
  clear(): void {
    this.values.clear();
    this.sinceSnapshot = 0;
  }

  get size(): number {
    return this.values.size;
  }

  /**
   * Writes the keys of `changes` whose value differs from the map's (undefined: remove) as one
   * batch at `seq`; nothing when none does. Returns how many were written and removed.
   */
  write(changes: Iterable<[string, unknown]>, seq: number): Promise<{ written: number; removed: number }> {
    return this.serial(async () => {
      const parts: string[] = [];
      const next: [string, { seq: number; json: string } | undefined][] = [];
      let written = 0;
      let removed = 0;
      for (const [key, value] of changes) {
        const cur = this.values.get(key);
        if (value === undefined) {
          if (!cur) continue;
          parts.push(`[${JSON.stringify(key)},${seq},null]`);
          next.push([key, undefined]);
          removed++;
          continue;
        }
        const json = JSON.stringify(value);
        if (cur?.json === json) continue;
        parts.push(`[${JSON.stringify(key)},${seq},${json}]`);
        next.push([key, { seq, json }]);
        written++;
      }
      if (parts.length === 0) return { written, removed };
      await this.doc.setJson(batchKey(this.prefix, seq), `{"seq":${seq},"entries":[${parts.join(',')}]}`);
      this.stats.batches++;
      for (const [key, v] of next) (v ? this.values.set(key, v) : this.values.delete(key));
      this.sinceSnapshot += parts.length;
      if (this.sinceSnapshot >= Math.max(this.snapshotAfter, this.values.size)) await this.compact(seq);
      return { written, removed };
    });
  }

  /**
   * Makes the map exactly `entries` as of `seq`, in one snapshot (the batches before it go).
   * Keys whose JSON is unchanged keep the seq they last changed at.
   */
  replace(entries: Iterable<[string, unknown]>, seq: number): Promise<{ written: number; removed: number }> {
    return this.serial(async () => {
      const before = new Map(this.values);
      let written = 0;
      this.values.clear();
      for (const [key, value] of entries) {
        if (value === undefined) continue;
        const json = JSON.stringify(value);
        const cur = before.get(key);
        before.delete(key);
        if (cur?.json === json) this.values.set(key, cur);
        else {
          this.values.set(key, { seq, json });
          written++;
        }
      }
      await this.compact(seq);
      return { written, removed: before.size };
    });
  }

  private async compact(seq: number): Promise<void> {
    const parts: string[] = [];
    for (const [key, v] of this.values) parts.push(`[${JSON.stringify(key)},${Math.min(v.seq, seq)},${v.json}]`);
    await this.doc.setJson(`${this.prefix}${SNAPSHOT_KEY}`, `{"seq":${seq},"snapshot":true,"entries":[${parts.join(',')}]}`);
    this.stats.snapshots++;
    this.sinceSnapshot = 0;
    // Older than the snapshot, so covered by it: readers ignore them, and the deletion (a
    // tombstone Iroh syncs) keeps them from piling up in every replica.
    await this.doc.deletePrefix(`${this.prefix}${BATCH_PREFIX}`);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => {});
    return run;
  }
}
