import type { NodeAddr } from '@number0/iroh';
import { Bitmap } from './bitmap.js';
import { hexOf } from './hash.js';
import { tags, type PieceBlobs } from './iroh-blobs.js';
import { AbortedError, type Priority, type TransferLimiter } from './limiter.js';
import { pieceLength, type PieceManifest } from './pieces.js';
import { DEFAULT_SCHEDULER, schedule, type SchedulerConfig, type StartKind } from './scheduler.js';

// The piece download engine: the imperative shell around scheduler.ts. It keeps the state of
// every piece and attempt, asks the scheduler what to do whenever something changes (a piece
// arrives, an attempt ends, progress stops, the holdings in the status document change, a timer
// the scheduler asked for fires), and carries it out: waits for the rate limiter, starts iroh
// downloads, marks stalled attempts and suspects their providers. Pieces already in the store
// are not fetched again (resume), and iroh itself resumes a partial piece.

export interface ProviderInfo {
  nodeId: string;
  addr: NodeAddr;
  have: Bitmap | 'all';
}

export interface ProviderSet {
  providers: ProviderInfo[];
  /** Other nodes fetching the same image now (their records are partial and fresh), with how many pieces they have. */
  peersFetching: { nodeId: string; pieces: number }[];
}

export interface EngineConfig extends SchedulerConfig {
  /** How long a provider whose attempt stalled gets no new piece (doubling per stall). */
  suspectMs: number;
  maxSuspectMs: number;
  /** Give up when no byte arrived for this long (waiting for the rate limiter aside). */
  unavailableTimeoutMs: number;
  /** Progress callbacks at most this often. */
  progressEveryMs: number;
}

export const DEFAULT_ENGINE: EngineConfig = {
  ...DEFAULT_SCHEDULER,
  suspectMs: 5_000,
  maxSuspectMs: 60_000,
  unavailableTimeoutMs: 30_000,
  progressEveryMs: 250,
};

export interface TransferProgress {
  hash: string;
  /** Bytes of the image here (whole pieces, and what arrived of pieces in flight). */
  bytes: number;
  total: number;
  pieces: number;
  piecesTotal: number;
  /** Bytes received from each provider so far (network bytes, as iroh counts them on this side). */
  perProvider: Record<string, number>;
  inFlight: number;
  stalls: number;
  hedges: number;
  elapsedMs: number;
}

export interface DownloadStats {
  hash: string;
  /** Network bytes received, all providers. */
  bytesReceived: number;
  perProvider: Record<string, { bytes: number; pieces: number }>;
  piecesFetched: number;
  piecesLocal: number;
  stalls: number;
  hedges: number;
  endgames: number;
  failures: number;
  elapsedMs: number;
  /** Most providers sending to this node at the same moment. */
  maxProvidersAtOnce: number;
  /** Stalled attempts still hanging in iroh when the download finished. */
  zombies: number;
}

export type EngineEvent =
  | { type: 'stall'; index: number; provider: string; suspectForMs: number }
  | { type: 'start'; index: number; provider: string; kind: StartKind }
  | { type: 'piece'; index: number; provider: string; ms: number }
  | { type: 'failure'; index: number; provider: string; why: string };

export class PiecesUnavailableError extends Error {
  constructor(
    readonly hash: string,
    readonly missing: number[],
    readonly detail: string,
  ) {
    super(`cannot fetch ${hash}: ${missing.length} piece(s) (${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', ...' : ''}) have no provider that answers${detail ? ` (${detail})` : ''}`);
    this.name = 'PiecesUnavailableError';
  }
}

export interface EngineOptions {
  manifest: PieceManifest;
  self: string;
  blobs: Pick<PieceBlobs, 'download' | 'isComplete'>;
  providers: () => ProviderSet;
  limiter?: TransferLimiter;
  priority?: () => Priority;
  config?: Partial<EngineConfig>;
  /** Pieces already here. */
  have?: Bitmap;
  onPiece?: (index: number, provider: string) => void;
  onProgress?: (p: TransferProgress) => void;
  onEvent?: (e: EngineEvent) => void;
  signal?: AbortSignal;
  now?: () => number;
}

interface Attempt {
  index: number;
  provider: string;
  kind: StartKind;
  /** ending: iroh's download returned, the store is being asked whether the piece is whole. */
  state: 'waiting' | 'live' | 'ending' | 'stalled' | 'over';
  startedAt: number | null;
  lastProgressAt: number;
  offset: number;
  /** Where the piece was when this attempt began (iroh resumes a partial piece; offsets are absolute). */
  base: number;
}

interface PieceState {
  index: number;
  size: number;
  done: boolean;
  attempts: Attempt[];
  failed: Set<string>;
  deferredSince: number | null;
  /** Highest offset any attempt reached. */
  best: number;
}

/** Failures in a row from each provider of a piece, with no other provider left: give up. */
const FAILS_TO_GIVE_UP = 3;

interface ProviderState {
  suspectUntil: number;
  probation: boolean;
  stalls: number;
  /** Failures in a row. */
  fails: number;
  /** When the last of those was counted: attempts already in flight then fail with it (a dropped
   * connection fails every piece it carried at once), and count as that one failure. */
  failedAt: number;
  /** Why its last attempt failed (shown when the download gives up). */
  lastError?: string;
  /** Network bytes of ended attempts. */
  received: number;
  pieces: number;
}

export class PieceDownload {
  private readonly c: EngineConfig;
  private readonly pieces: PieceState[];
  private readonly prov = new Map<string, ProviderState>();
  private readonly gains = new Map<string, { pieces: number; at: number }>();
  private readonly now: () => number;
  private readonly hex: string;
  private readonly started: number;
  private readonly abort = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private timerAt: number | null = null;
  private ticking = false;
  private again = false;
  private finished = false;
  private resolve!: (s: DownloadStats) => void;
  private reject!: (e: unknown) => void;
  private readonly result: Promise<DownloadStats>;
  private zombies = 0;
  private durations: number[] = [];
  /** When a byte last arrived (or the download started). */
  private lastByteAt: number;
  private lastProgress = 0;
  private readonly stats = { stalls: 0, hedges: 0, endgames: 0, failures: 0, maxProvidersAtOnce: 0, piecesLocal: 0 };

  constructor(private readonly o: EngineOptions) {
    this.c = { ...DEFAULT_ENGINE, ...o.config };
    this.now = o.now ?? (() => performance.now());
    this.started = this.now();
    this.lastByteAt = this.started;
    this.hex = hexOf(o.manifest.hash);
    const m = o.manifest;
    this.pieces = m.pieces.map((_, index) => {
      const size = pieceLength(index, m.size, m.pieceSize);
      const done = o.have?.has(index) ?? false;
      return { index, size, done, attempts: [], failed: new Set(), deferredSince: null, best: done ? size : 0 };
    });
    this.stats.piecesLocal = this.pieces.filter((p) => p.done).length;
    this.result = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    this.result.catch(() => {});
  }

  /** Runs until every piece is here; rejects when pieces stay unavailable, or on abort. */
  run(): Promise<DownloadStats> {
    if (this.o.signal?.aborted) this.fail(new AbortedError());
    this.o.signal?.addEventListener('abort', () => this.fail(new AbortedError()), { once: true });
    this.tick();
    return this.result;
  }

  /** Something outside changed (holdings in the status document): look again. */
  poke(): void {
    this.tick();
  }

  progress(): TransferProgress {
    const perProvider: Record<string, number> = {};
    for (const [id, p] of this.prov) perProvider[id] = p.received + this.liveBytes(id);
    let bytes = 0;
    let done = 0;
    let inFlight = 0;
    for (const p of this.pieces) {
      bytes += p.done ? p.size : Math.min(p.best, p.size);
      if (p.done) done++;
      inFlight += p.attempts.filter((a) => a.state === 'live' || a.state === 'waiting' || a.state === 'ending').length;
    }
    return {
      hash: this.o.manifest.hash,
      bytes,
      total: this.o.manifest.size,
      pieces: done,
      piecesTotal: this.pieces.length,
      perProvider,
      inFlight,
      stalls: this.stats.stalls,
      hedges: this.stats.hedges,
      elapsedMs: this.now() - this.started,
    };
  }

  // ---- the loop ----

  private tick(): void {
    if (this.finished) return;
    if (this.ticking) {
      this.again = true;
      return;
    }
    this.ticking = true;
    queueMicrotask(() => {
      try {
        do {
          this.again = false;
          this.step();
        } while (this.again && !this.finished);
      } catch (e) {
        this.fail(e);
      } finally {
        this.ticking = false;
      }
    });
  }

  private step(): void {
    if (this.pieces.every((p) => p.done)) return this.succeed();
    const now = this.now();
    const set = this.o.providers();
    const byId = new Map(set.providers.filter((p) => p.nodeId !== this.o.self).map((p) => [p.nodeId, p]));
    for (const id of byId.keys()) if (!this.prov.has(id)) this.prov.set(id, { suspectUntil: 0, probation: false, stalls: 0, fails: 0, failedAt: -Infinity, received: 0, pieces: 0 });
    const plan = schedule({
      now,
      self: this.o.self,
      salt: this.hex,
      pieces: this.pieces.map((p) => ({
        index: p.index,
        done: p.done,
        // An attempt whose end is being checked still counts (else the piece would start again
        // in that moment); it cannot stall.
        live: p.attempts
          .filter((a) => a.state === 'live' || a.state === 'waiting' || a.state === 'ending')
          .map((a) => ({ provider: a.provider, startedAt: a.state === 'ending' ? null : a.startedAt, lastProgressAt: a.lastProgressAt })),
        stalled: p.attempts.filter((a) => a.state === 'stalled').map((a) => a.provider),
        failed: [...p.failed],
        deferredSince: p.deferredSince,
      })),
      providers: [...byId.values()].map((p) => {
        const st = this.prov.get(p.nodeId)!;
        return { nodeId: p.nodeId, have: p.have, suspectUntil: st.suspectUntil, probation: st.probation, bytes: st.received + this.liveBytes(p.nodeId) };
      }),
      peersFetching: this.peerProgress(set.peersFetching, now),
      zombies: this.zombies,
      typicalPieceMs: this.typical(),
      config: this.c,
    });

    for (const s of plan.stalls) {
      const a = this.pieces[s.index]!.attempts.find((x) => x.provider === s.provider && x.state === 'live');
      if (!a) continue;
      a.state = 'stalled';
      this.zombies++;
      this.stats.stalls++;
      const st = this.prov.get(s.provider);
      let forMs = this.c.suspectMs;
      if (st) {
        st.stalls++;
        forMs = Math.min(this.c.maxSuspectMs, this.c.suspectMs * 2 ** (st.stalls - 1));
        st.suspectUntil = now + forMs;
        st.probation = true;
      }
      this.o.onEvent?.({ type: 'stall', index: s.index, provider: s.provider, suspectForMs: forMs });
    }
    for (const d of plan.defer) this.pieces[d.index]!.deferredSince = d.since;
    for (const s of plan.starts) {
      const addr = byId.get(s.provider)?.addr;
      if (addr) this.start(s.index, addr, s.kind, now);
    }

    // The download's own watchdog: pieces missing, and not one byte for unavailableTimeoutMs
    // (waiting for the rate limiter does not count): every provider is gone, give up (the
    // reconciler retries later, and what arrived stays).
    if (this.pieces.some((p) => p.attempts.some((a) => a.state === 'waiting'))) this.lastByteAt = now;
    const silent = now - this.lastByteAt;
    // Every provider of a missing piece keeps failing it (refusing, or sending bytes that fail
    // verification): waiting out the silence timeout would only delay saying so.
    const hopeless = this.pieces.some((p) => !p.done) && this.pieces.every((p) => p.done || (p.attempts.every((a) => a.state === 'over') && p.failed.size > 0 && [...p.failed].every((id) => (this.prov.get(id)?.fails ?? 0) >= FAILS_TO_GIVE_UP)));
    if (silent >= this.c.unavailableTimeoutMs || hopeless) {
      const missing = this.pieces.filter((p) => !p.done).map((p) => p.index);
      const quiet = [...this.prov.values()].filter((p) => p.suspectUntil > now).length;
      const errors = [...this.prov.entries()].filter(([, st]) => st.lastError).map(([id, st]) => `${id.slice(0, 10)}: ${st.lastError}`);
      const detail =
        byId.size === 0
          ? 'no node publishes this image'
          : `${byId.size} provider(s) known, ${quiet} not answering; ${hopeless ? 'every attempt failed' : `nothing arrived for ${Math.round(silent / 1000)} s`}${errors.length ? `; last errors: ${errors.join('; ')}` : ''}`;
      return this.fail(new PiecesUnavailableError(this.o.manifest.hash, plan.unavailable.length > 0 ? plan.unavailable : missing, detail));
    }
    this.wakeAt(this.lastByteAt + this.c.unavailableTimeoutMs);
    if (plan.wakeAt !== null) this.wakeAt(plan.wakeAt);
    this.report(false);
  }

  private start(index: number, addr: NodeAddr, kind: StartKind, now: number): void {
    const piece = this.pieces[index]!;
    const a: Attempt = { index, provider: addr.nodeId, kind, state: 'waiting', startedAt: null, lastProgressAt: now, offset: 0, base: 0 };
    piece.attempts.push(a);
    piece.deferredSince = null;
    if (kind === 'hedge') this.stats.hedges++;
    if (kind === 'endgame') this.stats.endgames++;
    this.o.onEvent?.({ type: 'start', index, provider: addr.nodeId, kind });
    const remaining = Math.max(1, piece.size - Math.min(piece.best, piece.size));
    const granted = this.o.limiter ? this.o.limiter.acquire(remaining, this.o.priority?.() ?? 'vm', this.abort.signal) : Promise.resolve();
    granted.then(
      () => this.begin(a, addr),
      () => {
        a.state = 'over';
      },
    );
  }

  private begin(a: Attempt, addr: NodeAddr): void {
    const piece = this.pieces[a.index]!;
    const st = this.prov.get(a.provider);
    if (this.finished || piece.done || (st && st.suspectUntil > this.now())) {
      // Granted too late to matter: the piece arrived meanwhile, or its provider went quiet.
      a.state = 'over';
      this.tick();
      return;
    }
    a.state = 'live';
    a.startedAt = a.lastProgressAt = this.now();
    const live = new Set<string>();
    for (const p of this.pieces) for (const x of p.attempts) if (x.state === 'live') live.add(x.provider);
    this.stats.maxProvidersAtOnce = Math.max(this.stats.maxProvidersAtOnce, live.size);
    a.base = Math.min(piece.best, piece.size);
    a.offset = a.base;
    this.o.blobs
      .download(this.o.manifest.pieces[a.index]!, addr, tags.piece(this.hex, a.index), (offset) => {
        a.lastProgressAt = this.lastByteAt = this.now();
        if (offset > a.offset) {
          a.offset = offset;
          if (offset > piece.best) piece.best = offset;
        }
        this.report(false);
      })
      .then(
        (r) => void this.end(a, r.bytesRead, null),
        (e: unknown) => void this.end(a, 0, e),
      );
  }

  private async end(a: Attempt, bytesRead: number, err: unknown): Promise<void> {
    const piece = this.pieces[a.index]!;
    const st = this.prov.get(a.provider);
    const wasStalled = a.state === 'stalled';
    if (wasStalled) this.zombies--;
    a.state = wasStalled ? 'over' : 'ending';
    // An attempt that hung (its provider died) never reports what it read: what it wrote is our
    // count of it (iroh keeps those bytes, and the next attempt fetches only the rest).
    if (st) st.received += bytesRead > 0 ? bytesRead : Math.max(0, a.offset - a.base);
    let complete = false;
    try {
      complete = await this.o.blobs.isComplete(this.o.manifest.pieces[a.index]!);
    } catch {
      complete = false;
    }
    a.state = 'over';
    if (complete) {
      if (!piece.done) {
        piece.done = true;
        piece.best = piece.size;
        if (st) {
          st.pieces++;
          st.probation = false;
          if (!wasStalled) st.stalls = st.fails = 0;
        }
        if (a.kind === 'new' && a.startedAt !== null && !wasStalled) this.durations.push(this.now() - a.startedAt);
        this.o.onEvent?.({ type: 'piece', index: a.index, provider: a.provider, ms: a.startedAt === null ? 0 : this.now() - a.startedAt });
        try {
          this.o.onPiece?.(a.index, a.provider);
        } catch {
          // a listener's problem is not the download's
        }
      }
    } else if (!this.finished && !piece.done) {
      const why = err ? ((err as Error).message ?? String(err)).split('\n')[0]! : 'no verified piece came (the provider lacks it, or its bytes do not match their BLAKE3 hash)';
      piece.failed.add(a.provider);
      this.stats.failures++;
      if (st) st.lastError = why;
      if (st && !wasStalled && (a.startedAt === null || a.startedAt > st.failedAt)) {
        // Failing fast (refused, not found, connection lost): suspect it, longer each time in a row.
        st.fails++;
        st.failedAt = this.now();
        const forMs = Math.min(this.c.maxSuspectMs, Math.min(this.c.suspectMs, 2_000) * 2 ** (st.fails - 1));
        st.suspectUntil = Math.max(st.suspectUntil, this.now() + forMs);
        st.probation = true;
      }
      this.o.onEvent?.({ type: 'failure', index: a.index, provider: a.provider, why });
    }
    this.tick();
  }

  /** When each other downloader was last seen to get a piece (first seen counts as a gain). */
  private peerProgress(peers: ProviderSet['peersFetching'], now: number): { nodeId: string; lastGainAt: number }[] {
    return peers
      .filter((p) => p.nodeId !== this.o.self)
      .map((p) => {
        const seen = this.gains.get(p.nodeId);
        if (!seen || p.pieces > seen.pieces) this.gains.set(p.nodeId, { pieces: p.pieces, at: now });
        return { nodeId: p.nodeId, lastGainAt: this.gains.get(p.nodeId)!.at };
      });
  }

  /** What attempts still running have moved from a provider (their network bytes come when they end). */
  private liveBytes(provider: string): number {
    let n = 0;
    for (const p of this.pieces) for (const a of p.attempts) if (a.provider === provider && (a.state === 'live' || a.state === 'stalled')) n += Math.max(0, a.offset - a.base);
    return n;
  }

  private typical(): number | null {
    if (this.durations.length === 0) return null;
    const s = [...this.durations].sort((x, y) => x - y);
    return s[Math.floor(s.length / 2)]!;
  }

  private wakeAt(t: number): void {
    if (this.finished) return;
    if (this.timerAt !== null && this.timerAt <= t && this.timer) return;
    clearTimeout(this.timer);
    this.timerAt = t;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.timerAt = null;
        // Progress callbacks that queued while the event loop was busy run first (poll phase):
        // a busy process must not take its own lateness for a silent provider.
        setImmediate(() => this.tick());
      },
      Math.max(1, Math.ceil(t - this.now())),
    );
  }

  private report(force: boolean): void {
    if (!this.o.onProgress) return;
    const now = this.now();
    if (!force && now - this.lastProgress < this.c.progressEveryMs) return;
    this.lastProgress = now;
    this.o.onProgress(this.progress());
  }

  private succeed(): void {
    if (this.finished) return;
    this.report(true);
    this.finished = true;
    this.cleanup();
    const perProvider: DownloadStats['perProvider'] = {};
    let total = 0;
    for (const [id, p] of this.prov) {
      // Attempts still hanging (zombies) count with what they wrote.
      const bytes = p.received + this.liveBytes(id);
      if (bytes === 0 && p.pieces === 0) continue;
      perProvider[id] = { bytes, pieces: p.pieces };
      total += bytes;
    }
    this.resolve({
      hash: this.o.manifest.hash,
      bytesReceived: total,
      perProvider,
      piecesFetched: this.pieces.length - this.stats.piecesLocal,
      piecesLocal: this.stats.piecesLocal,
      stalls: this.stats.stalls,
      hedges: this.stats.hedges,
      endgames: this.stats.endgames,
      failures: this.stats.failures,
      elapsedMs: this.now() - this.started,
      maxProvidersAtOnce: this.stats.maxProvidersAtOnce,
      zombies: this.zombies,
    });
  }

  private fail(e: unknown): void {
    if (this.finished) return;
    this.finished = true;
    this.cleanup();
    this.reject(e);
  }

  private cleanup(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.abort.abort();
  }
}
