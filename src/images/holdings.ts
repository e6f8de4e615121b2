import { Bitmap } from './bitmap.js';
import { hexOf } from './hash.js';
import type { PieceManifest } from './pieces.js';

// Which nodes hold which images, whole or in part, is in the status document: each node writes
// status/<its node id>/images/<whole-file hash hex> under its own author, and a downloader reads
// every node's entry for the image through a StatusView (which believes an entry only from the
// author committed for the node id in its key). One small record per image and node:
//
//   { v: 1, size, pieceSize, pieces, collection: <hex>, have: "all" | <base64 bitmap>, at: <ms> }
//
// `collection` is how a downloader learns the pieces: it fetches that hash sequence (32 bytes a
// piece) from a holder. `have` is "all" once the node verified the whole image (it is a holder:
// `image ls` and Image status list it), else a bitmap of the pieces it has so far (it serves
// them already). A node fetching an image publishes its record at once, even empty: downloaders
// that see each other split the pieces only the first provider has between them (see
// scheduler.ts). `at` is when the record was written; a partial record is rewritten every few
// seconds while its download runs, so a stale one (a downloader that died) stops counting.

export const HOLDINGS_SUB = 'images/';

export function holdingSub(hash: string): string {
  return `${HOLDINGS_SUB}${hexOf(hash)}`;
}

export interface HoldingRecord {
  v: 1;
  size: number;
  pieceSize: number;
  pieces: number;
  collection: string;
  have: 'all' | string;
  at: number;
}

/** What Blixard's StatusView offers (trusted authors only); a structural type keeps this module free of p2p. */
export interface StatusReader {
  nodes(): string[];
  get<T>(nodeId: string, sub: string): T | undefined;
  list<T>(nodeId: string, sub?: string): { key: string; value: T }[];
}

/** What Blixard's StatusWriter offers: writes under this node's own prefix. */
export interface StatusWriterLike {
  set(sub: string, value: unknown): Promise<void>;
  remove(sub: string): Promise<void>;
}

export interface Holding {
  nodeId: string;
  /** blake3:<hex> */
  hash: string;
  size: number;
  pieceSize: number;
  pieceCount: number;
  collection: string;
  /** 'all' when the node verified the whole image. */
  have: Bitmap | 'all';
  at: number;
}

/** A record as published, checked: anything malformed (a bug, another version) is ignored. */
export function parseHolding(nodeId: string, hashHex: string, value: unknown): Holding | null {
  if (typeof value !== 'object' || value === null) return null;
  const r = value as Partial<HoldingRecord>;
  if (r.v !== 1 || typeof r.collection !== 'string' || !/^[0-9a-f]{64}$/.test(r.collection)) return null;
  if (!Number.isSafeInteger(r.size) || !Number.isSafeInteger(r.pieceSize) || !Number.isSafeInteger(r.pieces)) return null;
  if (r.size! < 0 || r.pieceSize! <= 0 || r.pieces !== Math.ceil(r.size! / r.pieceSize!)) return null;
  let have: Bitmap | 'all';
  if (r.have === 'all') have = 'all';
  else if (typeof r.have === 'string') {
    try {
      have = Bitmap.decode(r.have, r.pieces!);
    } catch {
      return null;
    }
  } else return null;
  return { nodeId, hash: `blake3:${hashHex}`, size: r.size!, pieceSize: r.pieceSize!, pieceCount: r.pieces!, collection: r.collection, have, at: typeof r.at === 'number' ? r.at : 0 };
}

/** Every node's holding of one image (this node's own included; callers skip it as they need). */
export function holdingsOf(view: StatusReader, hash: string): Holding[] {
  const hex = hexOf(hash);
  const out: Holding[] = [];
  for (const nodeId of view.nodes()) {
    const h = parseHolding(nodeId, hex, view.get<unknown>(nodeId, `${HOLDINGS_SUB}${hex}`));
    if (h) out.push(h);
  }
  return out;
}

/** The nodes that hold an image whole (verified): Image status `holders`, `image ls`. */
export function holdersOf(view: StatusReader, hash: string): string[] {
  return holdingsOf(view, hash)
    .filter((h) => h.have === 'all')
    .map((h) => h.nodeId);
}

/** Every image any node publishes, with who holds it whole and who has part of it. */
export function imagesHeld(view: StatusReader): Map<string, { size: number; holders: string[]; partial: { nodeId: string; pieces: number; of: number }[] }> {
  const out = new Map<string, { size: number; holders: string[]; partial: { nodeId: string; pieces: number; of: number }[] }>();
  for (const nodeId of view.nodes()) {
    for (const { key, value } of view.list<unknown>(nodeId, HOLDINGS_SUB)) {
      const hex = key.slice(HOLDINGS_SUB.length);
      if (!/^[0-9a-f]{64}$/.test(hex)) continue;
      const h = parseHolding(nodeId, hex, value);
      if (!h) continue;
      const e = out.get(h.hash) ?? { size: h.size, holders: [], partial: [] };
      if (h.have === 'all') e.holders.push(nodeId);
      else e.partial.push({ nodeId, pieces: h.have.count, of: h.pieceCount });
      out.set(h.hash, e);
    }
  }
  return out;
}

export function recordOf(m: PieceManifest, have: Bitmap | 'all', now: number): HoldingRecord {
  return {
    v: 1,
    size: m.size,
    pieceSize: m.pieceSize,
    pieces: m.pieces.length,
    collection: m.collection,
    have: have === 'all' || have.complete ? 'all' : have.encode(),
    at: now,
  };
}

export interface HoldingsPublisherOptions {
  writer?: StatusWriterLike;
  /** At most one write per image in this time while pieces arrive (whole/removed go at once). */
  minIntervalMs?: number;
  /** A partial record is rewritten this often while it stands, to show its download is alive. */
  refreshMs?: number;
  onError?: (err: unknown) => void;
  now?: () => number;
}

/**
 * Publishes this node's holdings, coalesced: the latest state of each image wins, writes run one
 * at a time, and piece-by-piece progress is written at most every `minIntervalMs` per image.
 * Until the documents are open (attach), it remembers what to say and says it then.
 */
export class HoldingsPublisher {
  private writer: StatusWriterLike | undefined;
  /** What should stand in the document: hash -> record (null: remove). */
  private readonly wanted = new Map<string, { m: PieceManifest; have: Bitmap | 'all' } | null>();
  private readonly dirty = new Set<string>();
  private readonly lastWrite = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private refresher: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private draining = false;
  private stopped = false;
  private readonly now: () => number;
  /** Writes made (tests and metrics). */
  writes = 0;

  constructor(private readonly o: HoldingsPublisherOptions = {}) {
    this.writer = o.writer;
    this.now = o.now ?? Date.now;
    this.refresher = setInterval(() => this.refreshPartials(), o.refreshMs ?? 5_000);
    this.refresher.unref();
  }

  /** The status document is open: say everything remembered so far. */
  attach(writer: StatusWriterLike): void {
    this.writer = writer;
    for (const h of this.wanted.keys()) this.dirty.add(h);
    this.kick(true);
  }

  /** This node holds the image whole and verified. */
  full(m: PieceManifest): void {
    this.wanted.set(m.hash, { m, have: 'all' });
    this.lastWrite.delete(m.hash);
    this.mark(m.hash, true);
  }

  /** This node is fetching the image and has these pieces (may be none). */
  partial(m: PieceManifest, have: Bitmap): void {
    const prev = this.wanted.get(m.hash);
    this.wanted.set(m.hash, { m, have: have.clone() });
    this.mark(m.hash, !prev);
  }

  /** This node no longer has the image (or never had what an old record says). */
  remove(hash: string): void {
    if (this.wanted.has(hash) && this.wanted.get(hash) === null) return;
    this.wanted.set(hash, null);
    this.lastWrite.delete(hash);
    this.mark(hash, true);
  }

  /** What this node says (or will say) it holds. */
  published(hash: string): 'all' | Bitmap | null {
    return this.wanted.get(hash)?.have ?? null;
  }

  /** Resolves once everything marked so far is written. */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.drain(true);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.refresher);
  }

  private mark(hash: string, now: boolean): void {
    this.dirty.add(hash);
    this.kick(now);
  }

  private kick(now: boolean): void {
    if (this.stopped || !this.writer) return;
    if (now) {
      void this.drain(false);
      return;
    }
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.drain(false);
    }, this.o.minIntervalMs ?? 150);
    this.timer.unref();
  }

  private drain(force: boolean): Promise<void> {
    if (this.draining && !force) return this.running;
    this.draining = true;
    this.running = this.running.then(async () => {
      try {
        while (this.writer && this.dirty.size > 0) {
          const min = this.o.minIntervalMs ?? 150;
          const now = this.now();
          let later = false;
          for (const hash of [...this.dirty]) {
            const w = this.wanted.get(hash);
            const last = this.lastWrite.get(hash);
            // Piece-by-piece progress waits for its interval; whole and removed go at once.
            if (!force && w && w.have !== 'all' && last !== undefined && now - last < min) {
              later = true;
              continue;
            }
            this.dirty.delete(hash);
            try {
              if (w) await this.writer.set(holdingSub(hash), recordOf(w.m, w.have, this.now()));
              else {
                await this.writer.remove(holdingSub(hash));
                this.wanted.delete(hash);
              }
              this.writes++;
              this.lastWrite.set(hash, this.now());
            } catch (e) {
              this.o.onError?.(e);
            }
          }
          if (later) {
            if (!force) {
              this.kick(false);
              break;
            }
          }
        }
      } finally {
        this.draining = false;
      }
    });
    return this.running;
  }

  private refreshPartials(): void {
    for (const [hash, w] of this.wanted) if (w && w.have !== 'all') this.dirty.add(hash);
    if (this.dirty.size > 0) this.kick(false);
  }
}
