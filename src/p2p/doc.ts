import { promisify } from 'node:util';
import { deflateRaw, deflateRawSync, inflateRawSync } from 'node:zlib';
import type { Doc, Entry, Iroh, LiveEvent, NodeAddr } from '@number0/iroh';
import type { P2PMetrics } from './metrics.js';
import { downloadBlob } from './transfer.js';

// One Iroh document, the way Blixard uses them: string keys, small JSON values, several authors.
// Iroh keeps every author's latest entry per key and syncs them all; which authors to believe is
// the reader's decision, so every read takes the set of authors it trusts.

export type DocMode = 'Read' | 'Write';

export interface DocEntry<T = unknown> {
  key: string;
  author: string;
  value: T;
  /** Microseconds since the epoch, as the writer's clock put it. */
  timestamp: bigint;
  /** The content's hash (Iroh's form). */
  hash?: string;
}

export type DocEvent =
  | {
      type: 'insert';
      key: string;
      author: string;
      remote: boolean;
      from?: string;
      contentReady: boolean;
      /** The content hash (Iroh's form): a later content-ready event names it. */
      hash?: string;
      /** Microseconds since the epoch, as the writer's clock put it. */
      timestamp?: bigint;
      /** The content's size in bytes (0: a tombstone). */
      len?: bigint;
    }
  | { type: 'content-ready'; hash: string }
  | { type: 'sync-finished'; peer: string; ok: boolean }
  | { type: 'neighbor-up' | 'neighbor-down'; peer: string };

/** An entry as an insert event described it: enough to read it without looking it up again. */
export interface EntryHint {
  hash: string;
  timestamp: bigint;
  len: bigint;
}

export interface ListOptions {
  trust?: (author: string, key: string) => boolean;
  /**
   * Entries the caller already holds (same key, author and timestamp): left out without reading
   * their content, so re-reading a big document costs little when little changed.
   */
  known?: (key: string, author: string, timestamp: bigint) => boolean;
  /** Every trusted author's entry per key, not only the best one. */
  perAuthor?: boolean;
}

/** Content reads in flight at once (one native call each; in parallel they cost ~5x less). */
const READ_WIDTH = 32;

export interface ReplicatedDocOptions {
  /** Sync latency of remote inserts goes here (labelled with `name`). */
  metrics?: P2PMetrics;
  /** A short name for logs and metric labels ('cluster', 'status'); default: the id's start. */
  name?: string;
  /** Errors Iroh reports on the event stream (they are counted in metrics too). */
  onError?: (err: Error) => void;
}

const newer = (a: DocEntry<unknown>, b: DocEntry<unknown>) => a.timestamp > b.timestamp;

/** Fetches of missing content tried per entry before it waits for a later read to note it. */
const FETCH_TRIES = 5;

/** Own writes whose content is kept in memory until a view reads it (bounded). */
const OWN_WRITES_KEPT = 4096;

/** How long a join waits to be in the document's swarm before it returns anyway. */
const JOIN_WAIT_MS = 5_000;

type IrohModule = typeof import('@number0/iroh');

export class ReplicatedDoc {
  /** The name in metric labels and logs. */
  readonly label: string;
  readonly metrics: P2PMetrics | undefined;
  private readonly onError: ((err: Error) => void) | undefined;
  /** Whether one subscription already feeds the metrics (more listeners must not count twice). */
  private metered = false;
  /** Content hash -> key and when first seen, of entries read whose content is not here. */
  private readonly missing = new Map<string, { key: string; author: string; since: number; tries: number }>();
  /** Every subscriber's callback, to tell them of content fetched here. */
  private readonly listeners: ((e: DocEvent) => void)[] = [];
  /** Content hash -> JSON of this node's recent writes: its own views need not read them back. */
  private readonly ownWrites = new Map<string, string>();

  private constructor(
    private readonly iroh: Iroh,
    private readonly doc: Doc,
    private readonly m: IrohModule,
    readonly author: string,
    opts: ReplicatedDocOptions = {},
  ) {
    this.label = opts.name ?? doc.id().slice(0, 10);
    this.metrics = opts.metrics;
    this.onError = opts.onError;
  }

  static async create(iroh: Iroh, opts: ReplicatedDocOptions = {}): Promise<ReplicatedDoc> {
    const m = await import('@number0/iroh');
    return new ReplicatedDoc(iroh, await iroh.docs.create(), m, (await iroh.authors.default()).toString(), opts);
  }

  /**
   * Opens a document this node already has (after a restart), or null. Iroh does not resume
   * syncing a document it opens: call startSync (or use openOrJoin) to catch up with peers.
   */
  static async open(iroh: Iroh, id: string, onEvent?: (e: DocEvent) => void, opts: ReplicatedDocOptions = {}): Promise<ReplicatedDoc | null> {
    const m = await import('@number0/iroh');
    let doc: Doc | null;
    try {
      doc = await iroh.docs.open(id);
    } catch (e) {
      if (/replica not found/i.test((e as Error).message)) return null; // never joined here
      throw e;
    }
    if (!doc) return null;
    const d = new ReplicatedDoc(iroh, doc, m, (await iroh.authors.default()).toString(), opts);
    if (onEvent || opts.metrics || opts.onError) await d.listen(onEvent);
    return d;
  }

  /** Joins from a ticket and starts syncing with the peers it names; events from the first sync on. */
  static async join(iroh: Iroh, ticket: string, onEvent?: (e: DocEvent) => void, opts: ReplicatedDocOptions = {}): Promise<ReplicatedDoc> {
    const m = await import('@number0/iroh');
    const author = (await iroh.authors.default()).toString();
    let d: ReplicatedDoc | undefined;
    const early: [Error | null, LiveEvent][] = [];
    // Writes made before this node is in the document's gossip swarm reach nobody until the next
    // sync: the join returns once a peer is a neighbour or a first sync finished (or after a
    // while, when nobody answers: the document still works locally and syncs later).
    let inSwarm: () => void = () => {};
    const joined = new Promise<void>((r) => (inSwarm = r));
    const doc = await iroh.docs.joinAndSubscribe(m.DocTicket.fromString(ticket), (err, ev) => {
      if (!err && (ev.neighborUp || ev.syncFinished)) inSwarm();
      if (d) d.dispatch(err, ev, onEvent, true);
      else early.push([err, ev]);
    });
    d = new ReplicatedDoc(iroh, doc, m, author, opts);
    d.metered = true;
    if (onEvent) d.listeners.push(onEvent);
    for (const [err, ev] of early) d.dispatch(err, ev, onEvent, true);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([joined, new Promise<void>((r) => (timer = setTimeout(r, JOIN_WAIT_MS)))]);
    clearTimeout(timer);
    return d;
  }

  /**
   * The document as this node left it, syncing again with the peers in the ticket and `peers`
   * (a node that was down catches up on what it missed); or, the first time, joined from the
   * ticket. `id` is the document's namespace id (a Write ticket carries only the secret).
   */
  static async openOrJoin(iroh: Iroh, id: string, ticket: string, onEvent?: (e: DocEvent) => void, opts: ReplicatedDocOptions & { peers?: NodeAddr[] } = {}): Promise<ReplicatedDoc> {
    const opened = await ReplicatedDoc.open(iroh, id, onEvent, opts);
    if (!opened) return ReplicatedDoc.join(iroh, ticket, onEvent, opts);
    const m = await import('@number0/iroh');
    const self = await iroh.net.nodeId();
    const peers = new Map<string, NodeAddr>();
    for (const p of [...m.DocTicket.fromString(ticket).nodes, ...(opts.peers ?? [])]) if (p.nodeId !== self) peers.set(p.nodeId, p);
    if (peers.size > 0) await opened.startSync([...peers.values()]);
    return opened;
  }

  get id(): string {
    return this.doc.id();
  }

  /** More listeners for this document's events (each call adds one). */
  async subscribe(onEvent: (e: DocEvent) => void): Promise<void> {
    await this.listen(onEvent);
  }

  private async listen(onEvent: ((e: DocEvent) => void) | undefined): Promise<void> {
    if (onEvent) this.listeners.push(onEvent);
    const meter = !this.metered;
    this.metered = true;
    await this.doc.subscribe((err, ev) => this.dispatch(err, ev, onEvent, meter));
  }

  /** A ticket to this document: Write carries the namespace secret, so hand it out sparingly. */
  async ticket(mode: DocMode): Promise<string> {
    return (await this.doc.share(mode === 'Write' ? this.m.ShareMode.Write : this.m.ShareMode.Read, this.m.AddrInfoOptions.Addresses)).toString();
  }

  async startSync(peers: NodeAddr[]): Promise<void> {
    await this.doc.startSync(peers);
  }

  async set(key: string, value: unknown): Promise<void> {
    await this.setJson(key, JSON.stringify(value));
  }

  /** Writes a value already in JSON form (callers that build it from parts). */
  async setJson(key: string, json: string): Promise<void> {
    // A snapshot of a big map is megabytes: deflated on the thread pool, not the event loop.
    const bytes = json.length > DEFLATE_OFF_THREAD ? await encodeValueAsync(json) : encodeValue(json);
    const hash = await this.doc.setBytes(this.authorId(), keyBytes(key), numbers(bytes));
    this.metrics?.docWrites.inc({ doc: this.label });
    this.metrics?.docWriteBytes.inc({ doc: this.label }, bytes.length);
    if (this.ownWrites.size >= OWN_WRITES_KEPT) this.ownWrites.delete(this.ownWrites.keys().next().value!);
    this.ownWrites.set(hash.toString(), json);
  }

  /** Deletes this author's entries under `prefix` (Iroh writes empty tombstones that sync too). */
  async deletePrefix(prefix: string): Promise<void> {
    await this.doc.delete(this.authorId(), bytes(prefix));
  }

  /**
   * One entry per key under `prefix`, from the trusted authors only (all authors when `trust` is
   * undefined), the newest by timestamp (or one per author: `perAuthor`). Entries whose content has not
   * arrived yet are skipped: they come with a later insert or content-ready event.
   */
  async list<T = unknown>(prefix: string, opts: ListOptions = {}): Promise<DocEntry<T>[]> {
    return this.pick<T>(await this.doc.getMany(this.m.Query.keyPrefix(bytes(prefix))), opts);
  }

  private async pick<T>(raw: Entry[], opts: ListOptions): Promise<DocEntry<T>[]> {
    const wanted: { e: Entry; key: string }[] = [];
    for (const e of raw) {
      const key = keyOf(e.key);
      if (opts.trust && !opts.trust(e.author, key)) continue;
      if (e.len === 0n) continue; // a tombstone
      if (opts.known?.(key, e.author, e.timestamp)) continue;
      wanted.push({ e, key });
    }
    const values = new Array<T | undefined>(wanted.length);
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(READ_WIDTH, wanted.length) }, async () => {
        while (next < wanted.length) {
          const i = next++;
          values[i] = await this.read<T>(wanted[i]!.e);
        }
      }),
    );
    const best = new Map<string, DocEntry<T>>();
    for (let i = 0; i < wanted.length; i++) {
      const value = values[i];
      if (value === undefined) continue; // content not here yet
      const { e, key } = wanted[i]!;
      const cand: DocEntry<T> = { key, author: e.author, value, timestamp: e.timestamp, hash: e.hash };
      const id = opts.perAuthor ? `${key}\0${e.author}` : key;
      const prev = best.get(id);
      if (!prev || newer(cand, prev)) best.set(id, cand);
    }
    return [...best.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /**
   * One author's entry for exactly `key`, or undefined (none, a tombstone, or content not here
   * yet). Cheap: Iroh indexes entries by author and key (a key-only lookup scans the document).
   */
  async getExact<T = unknown>(author: string, key: string): Promise<DocEntry<T> | undefined> {
    const e = await this.doc.getExact(this.m.AuthorId.fromString(author), keyBytes(key), false);
    if (!e || e.len === 0n) return undefined;
    const value = await this.read<T>(e);
    return value === undefined ? undefined : { key, author: e.author, value, timestamp: e.timestamp, hash: e.hash };
  }

  /**
   * The entry an insert event described (`hint`), its content read by hash: no lookup of the
   * entry itself, the cost of following a busy document. When that content is gone (replaced
   * since) or not here yet, the author's current entry is looked up instead.
   */
  async entryAt<T = unknown>(author: string, key: string, hint: EntryHint): Promise<DocEntry<T> | undefined> {
    if (hint.len === 0n) return undefined; // a tombstone
    const own = this.ownWrites.get(hint.hash);
    if (own !== undefined) {
      this.ownWrites.delete(hint.hash);
      return { key, author, value: JSON.parse(own) as T, timestamp: hint.timestamp, hash: hint.hash };
    }
    const value = await this.content<T>(hint.hash);
    if (value !== undefined) return { key, author, value, timestamp: hint.timestamp, hash: hint.hash };
    return this.getExact<T>(author, key);
  }

  async get<T = unknown>(key: string, opts: ListOptions = {}): Promise<DocEntry<T> | undefined> {
    return (await this.entriesOf<T>(key, opts))[0];
  }

  /**
   * The entry for exactly `key` (not the keys it is a prefix of), as `list` would choose it. Iroh
   * finds it by scanning the document: with an author at hand, getExact is far cheaper.
   */
  async entriesOf<T = unknown>(key: string, opts: ListOptions = {}): Promise<DocEntry<T>[]> {
    return this.pick<T>(await this.doc.getMany(this.m.Query.keyExact(keyBytes(key))), opts);
  }

  async close(): Promise<void> {
    await this.doc.closeMe();
  }

  /** Content by hash, or undefined when it is not (or no longer) here. */
  private async content<T>(hash: string): Promise<T | undefined> {
    try {
      const v = JSON.parse(decodeValue(Buffer.from(await this.iroh.blobs.readToBytes(hash)))) as T;
      this.missing.delete(hash);
      return v;
    } catch {
      return undefined;
    }
  }

  /** An entry's content; when it is not here, noted for fetchMissing. */
  private async read<T>(e: Entry): Promise<T | undefined> {
    const v = await this.content<T>(e.hash);
    if (v === undefined) this.noteMissing(e.hash, keyOf(e.key), e.author);
    return v;
  }

  private noteMissing(hash: string, key: string, author: string): void {
    if (!this.missing.has(hash)) this.missing.set(hash, { key, author, since: Date.now(), tries: 0 });
  }

  /** Every author's entries under `prefix`, as stored here (debugging: no trust applied). */
  async dump(prefix: string): Promise<{ key: string; author: string; timestamp: string; size: number; value: unknown }[]> {
    const raw = await this.doc.getMany(this.m.Query.keyPrefix(bytes(prefix)));
    const out = [];
    for (const e of raw) {
      const value = e.len === 0n ? null : ((await this.read<unknown>(e)) ?? '<content missing>');
      out.push({ key: keyOf(e.key), author: e.author, timestamp: new Date(Number(e.timestamp / 1000n)).toISOString(), size: Number(e.len), value });
    }
    return out;
  }

  /** Entries this node has whose content has been missing for at least `ms`. */
  missingContent(ms = 0): { hash: string; key: string; author: string }[] {
    const before = Date.now() - ms;
    return [...this.missing].filter(([, m]) => m.since <= before).map(([hash, m]) => ({ hash, key: m.key, author: m.author }));
  }

  /**
   * Fetches content missing for at least `ms` from `providersOf(key)`, in turn. Iroh fetches an
   * entry's content once, from the peer that sent the entry; when that fails (the peer left the
   * swarm, or replaced the entry first) the entry stays without content, and a sync does not fetch
   * it again since the entry itself is already here. Returns the keys whose content came.
   */
  async fetchMissing(providersOf: (key: string) => NodeAddr[], ms: number): Promise<string[]> {
    const got: string[] = [];
    for (const { hash, key, author } of this.missingContent(ms)) {
      // Replaced since by a newer entry of the same author: that one's content is what counts.
      const cur = await this.doc.getExact(this.m.AuthorId.fromString(author), keyBytes(key), false).catch(() => null);
      if (!cur || cur.hash !== hash || cur.len === 0n) {
        this.missing.delete(hash);
        continue;
      }
      const providers = providersOf(key);
      if (providers.length === 0) continue;
      try {
        await downloadBlob(this.iroh, hash, providers, { connectTimeoutMs: 2000, ...(this.metrics ? { metrics: this.metrics } : {}) });
        this.missing.delete(hash);
        this.metrics?.docContentRefetched.inc({ doc: this.label });
        got.push(key);
        for (const l of this.listeners) l({ type: 'content-ready', hash });
      } catch {
        // Nobody had it (replaced everywhere meanwhile, or an entry nobody can serve): tried again
        // later, a few times; after that only a later read of the entry notes it again.
        const m = this.missing.get(hash);
        if (m && ++m.tries >= FETCH_TRIES) this.missing.delete(hash);
        else if (m) m.since = Date.now();
      }
    }
    return got;
  }

  private authorId() {
    return this.m.AuthorId.fromString(this.author);
  }

  private dispatch(err: Error | null, ev: LiveEvent, onEvent: ((e: DocEvent) => void) | undefined, meter: boolean): void {
    if (err && meter) {
      // Iroh reports a broken event stream here: surfaced, never dropped silently.
      this.metrics?.errors.inc({ component: `doc-${this.label}` });
      this.onError?.(err);
      return;
    }
    if (err) return;
    if (meter && ev.insertRemote && this.metrics) {
      // From the write (the writer's clock, µs since the epoch) to this node seeing it.
      const nowUs = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000));
      const lag = nowUs - ev.insertRemote.entry.timestamp;
      this.metrics.docSyncLatency.observe({ doc: this.label }, lag > 0n ? Number(lag) / 1e6 : 0);
    }
    if (meter && ev.syncFinished) this.metrics?.docSyncs.inc({ doc: this.label, result: ev.syncFinished.result ? 'error' : 'ok' });
    if (ev.contentReady) this.missing.delete(ev.contentReady.hash);
    else if (ev.insertRemote && ev.insertRemote.contentStatus !== 'Complete' && ev.insertRemote.entry.len > 0n) {
      const e = ev.insertRemote.entry;
      this.noteMissing(e.hash, keyOf(e.key), e.author);
    }
    if (!onEvent) return;
    if (ev.insertLocal) {
      const e = ev.insertLocal.entry;
      onEvent({ type: 'insert', key: keyOf(e.key), author: e.author, remote: false, contentReady: true, hash: e.hash, timestamp: e.timestamp, len: e.len });
    } else if (ev.insertRemote) {
      const e = ev.insertRemote.entry;
      onEvent({ type: 'insert', key: keyOf(e.key), author: e.author, remote: true, from: ev.insertRemote.from, contentReady: ev.insertRemote.contentStatus === 'Complete', hash: e.hash, timestamp: e.timestamp, len: e.len });
    } else if (ev.contentReady) onEvent({ type: 'content-ready', hash: ev.contentReady.hash });
    else if (ev.syncFinished) onEvent({ type: 'sync-finished', peer: ev.syncFinished.peer, ok: !ev.syncFinished.result });
    else if (ev.neighborUp) onEvent({ type: 'neighbor-up', peer: ev.neighborUp.neighbor });
    else if (ev.neighborDown) onEvent({ type: 'neighbor-down', peer: ev.neighborDown.neighbor });
  }
}

/**
 * A value's bytes as stored: its JSON, or for a larger one a NUL byte (no JSON text starts with
 * one) and the JSON deflated. Iroh's bindings move bytes as Array<number>, ~0.1 µs per byte each
 * way (a 23 KB batch of VM reports: ~3 ms to write, ~3 ms for every reader), and a batch of
 * similar reports deflates ~10x in a fraction of that.
 */
const DEFLATE_ABOVE = 1024;

export function encodeValue(json: string): Buffer {
  const raw = Buffer.from(json, 'utf8');
  if (raw.length <= DEFLATE_ABOVE) return raw;
  return Buffer.concat([Buffer.of(0), deflateRawSync(raw, { level: 1 })]);
}

const DEFLATE_OFF_THREAD = 256 * 1024;
const deflateRawAsync = promisify(deflateRaw);

async function encodeValueAsync(json: string): Promise<Buffer> {
  return Buffer.concat([Buffer.of(0), await deflateRawAsync(Buffer.from(json, 'utf8'), { level: 1 })]);
}

export function decodeValue(b: Buffer): string {
  return (b[0] === 0 ? inflateRawSync(b.subarray(1)) : b).toString('utf8');
}

function bytes(s: string): number[] {
  return numbers(Buffer.from(s, 'utf8'));
}

/**
 * Bytes as the Array<number> Iroh's bindings take. A plain loop: spreading a Buffer goes through
 * the iterator protocol, ~17x slower (14 µs for a 300-byte value, on every document write).
 */
function numbers(b: Buffer): number[] {
  const out = new Array<number>(b.length);
  for (let i = 0; i < b.length; i++) out[i] = b[i]!;
  return out;
}

/**
 * A key as stored: terminated by a NUL byte. Iroh documents delete, on every write, the same
 * author's older entries whose keys start with the written key (Willow's prefix pruning), so
 * `vm/web` written after `vm/web-1` would remove it; a terminated key is a prefix of no other.
 * Prefix queries and deletePrefix use the bare prefix, which still matches terminated keys.
 */
function keyBytes(key: string): number[] {
  return numbers(Buffer.from(key + KEY_END, 'utf8'));
}

function keyOf(raw: ArrayLike<number>): string {
  const s = Buffer.from(raw as Uint8Array).toString('utf8');
  return s.endsWith(KEY_END) ? s.slice(0, -1) : s;
}

const KEY_END = '\0';
