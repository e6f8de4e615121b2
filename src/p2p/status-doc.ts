import type { DocEntry, DocEvent, ReplicatedDoc } from './doc.js';

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

export class StatusWriter {
  constructor(
    private readonly doc: ReplicatedDoc,
    private readonly nodeId: string,
  ) {}

  async set(sub: string, value: unknown): Promise<void> {
    await this.doc.set(statusKey(this.nodeId, sub), value);
  }

  async remove(sub: string): Promise<void> {
    await this.doc.set(statusKey(this.nodeId, sub), null);
  }
}

export class StatusView {
  private readonly entries = new Map<string, DocEntry<unknown>>();
  private pending: Promise<void> = Promise.resolve();
  /** Entries seen whose author does not own the node id their key names. */
  forged = 0;

  constructor(
    private readonly doc: ReplicatedDoc,
    /** The committed map: node id -> its document author id. */
    private readonly authorOf: (nodeId: string) => string | undefined,
    private readonly onChange?: (keys: string[]) => void,
  ) {}

  event(e: DocEvent): void {
    if (e.type === 'insert') {
      if (!this.trusted(e.author, e.key)) {
        this.forged++;
        return;
      }
      this.refresh(e.key);
    } else if (e.type === 'content-ready' || (e.type === 'sync-finished' && e.ok)) this.refresh(STATUS_PREFIX);
  }

  async load(): Promise<void> {
    this.refresh(STATUS_PREFIX);
    await this.pending;
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
    const ids = new Set<string>();
    for (const key of this.entries.keys()) {
      const id = nodeOfKey(key);
      if (id) ids.add(id);
    }
    return [...ids].sort();
  }

  private trusted(author: string, key: string): boolean {
    const nodeId = nodeOfKey(key);
    return nodeId !== undefined && this.authorOf(nodeId) === author;
  }

  private refresh(prefix: string): void {
    this.pending = this.pending
      .then(async () => {
        const changed: string[] = [];
        for (const e of await this.doc.list(prefix, { trust: (a, k) => this.trusted(a, k) })) {
          const cur = this.entries.get(e.key);
          if (cur && cur.timestamp >= e.timestamp) continue;
          this.entries.set(e.key, e);
          changed.push(e.key);
        }
        if (changed.length > 0) this.onChange?.(changed);
      })
      .catch(() => {});
  }
}
