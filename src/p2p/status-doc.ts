import type { DocEntry, DocEvent, ReplicatedDoc } from './doc.js';
import type { P2PMetrics } from './metrics.js';
import { Refresher, eachLimited, wholeIsCheaper, type DirtyKey, type ViewOptions } from './refresher.js';

// The status document: every node writes what it observes under status/<its node id>/ with its
// own author (SPEC section 1, step 7). Every admitted node can write to the document, so a reader
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

/** A failed write of a key is tried again after this, doubling, this many times. */
const RETRY_MS = 500;
const RETRIES = 6;

/**
 * Writes this node's entries. Writes of one key go one at a time and only the newest value is
 * written: two writes of a key in flight together can land in either order in Iroh (each stores
 * its content first, then inserts the entry and takes its timestamp), and the one that lands last
 * wins everywhere, so "Running" could be overwritten for good by the "Starting" before it. A
 * failed write is retried unless a newer value for the key came meanwhile.
 */
export class StatusWriter {
  private readonly keys = new Map<string, { value: unknown; version: number; written: number; chain: Promise<void> }>();
  private version = 0;
  private closed = false;

  constructor(
    private readonly doc: ReplicatedDoc,
    private readonly nodeId: string,
  ) {}

  set(sub: string, value: unknown): Promise<void> {
    return this.write(statusKey(this.nodeId, sub), value, 0);
  }

  remove(sub: string): Promise<void> {
    return this.write(statusKey(this.nodeId, sub), null, 0);
  }

  /** No more retries (the document is closing). */
  close(): void {
    this.closed = true;
  }

  private write(key: string, value: unknown, attempt: number): Promise<void> {
    const version = ++this.version;
    let k = this.keys.get(key);
    if (!k) this.keys.set(key, (k = { value, version, written: 0, chain: Promise.resolve() }));
    k.value = value;
    k.version = version;
    const state = k;
    const step = state.chain
      .catch(() => {})
      .then(async () => {
        if (state.written >= state.version) return; // a later step in the chain wrote it already
        const v = state.version;
        const val = state.value;
        try {
          await this.doc.set(key, val);
          state.written = Math.max(state.written, v);
        } catch (e) {
          if (!this.closed && attempt < RETRIES) {
            const t = setTimeout(() => {
              if (!this.closed && state.version === v && this.keys.get(key) === state) void this.write(key, val, attempt + 1).catch(() => {});
            }, RETRY_MS * 2 ** attempt);
            t.unref();
          }
          throw e;
        }
      });
    state.chain = step;
    void step
      .finally(() => {
        if (this.keys.get(key) === state && state.chain === step && state.written >= state.version) this.keys.delete(key);
      })
      .catch(() => {});
    return step;
  }
}

export class StatusView {
  private readonly entries = new Map<string, DocEntry<unknown>>();
  // The node ids the keys name, kept as entries arrive: liveness asks for them on every read of
  // a VM's status, and a scan of every VM's entry each time made listing VMs O(n^2).
  private readonly nodeIds = new Set<string>();
  private readonly refresher: Refresher;
  private readonly metrics: P2PMetrics | undefined;
  private readonly name: string;
  private live = 0;
  /** Entries seen whose author does not own the node id their key names. */
  forged = 0;

  constructor(
    private readonly doc: ReplicatedDoc,
    /** The committed map: node id -> its document author id. */
    private readonly authorOf: (nodeId: string) => string | undefined,
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

  event(e: DocEvent): void {
    if (e.type === 'insert' && !this.trusted(e.author, e.key)) {
      this.forged++;
      this.metrics?.docUntrusted.inc({ doc: this.name });
      return;
    }
    this.refresher.event(e);
  }

  async load(): Promise<void> {
    this.refresher.all();
    await this.refresher.idle();
  }

  /** Resolves once every event fed so far has been read. */
  settled(): Promise<void> {
    return this.refresher.idle();
  }

  /** Values a node published under `sub` prefix (e.g. 'vm/'), keyed by the rest of the key. */
  list<T>(nodeId: string, sub = ''): { key: string; value: T }[] {
    const prefix = statusKey(nodeId, sub);
    const out: { key: string; value: T }[] = [];
    for (const [key, e] of this.entries) if (key.startsWith(prefix) && e.value !== null) out.push({ key: key.slice(statusKey(nodeId, '').length), value: e.value as T });
    return out.sort((a, b) => (a.key < b.key ? -1 : 1));
  }

  get<T>(nodeId: string, sub: string): T | undefined {
    const e = this.entries.get(statusKey(nodeId, sub));
    return e && e.value !== null ? (e.value as T) : undefined;
  }

  nodes(): string[] {
    return [...this.nodeIds].sort();
  }

  /** How many believed entries (not removed) the view holds. */
  get size(): number {
    return this.live;
  }

  private trusted(author: string, key: string): boolean {
    const nodeId = nodeOfKey(key);
    return nodeId !== undefined && this.authorOf(nodeId) === author;
  }

  private async read(keys: DirtyKey[] | null): Promise<void> {
    const changed: string[] = [];
    const trust = (a: string, k: string) => this.trusted(a, k);
    const take = (e: DocEntry<unknown>) => {
      const cur = this.entries.get(e.key);
      if (cur && cur.timestamp >= e.timestamp) return;
      this.entries.set(e.key, e);
      if (!cur) {
        const id = nodeOfKey(e.key);
        if (id) this.nodeIds.add(id);
      }
      this.live += (e.value === null ? 0 : 1) - (cur && cur.value !== null ? 1 : 0);
      changed.push(e.key);
    };
    if (keys === null || wholeIsCheaper(keys.length, this.entries.size)) {
      const known = (key: string, author: string, timestamp: bigint) => {
        const cur = this.entries.get(key);
        return cur !== undefined && cur.author === author && cur.timestamp === timestamp;
      };
      for (const e of await this.doc.list(STATUS_PREFIX, { trust, known })) take(e);
    } else {
      await eachLimited(keys, 16, async ({ key, authors, hints }) => {
        if (authors === null) (await this.doc.entriesOf(key, { trust })).forEach(take);
        else
          for (const a of authors) {
            if (!trust(a, key)) continue;
            const hint = hints?.get(a);
            const e = hint ? await this.doc.entryAt(a, key, hint) : await this.doc.getExact(a, key);
            if (e) take(e);
          }
      });
    }
    this.metrics?.docEntries.set({ doc: this.name }, this.live);
    if (changed.length > 0) this.onChange?.(changed);
  }
}
