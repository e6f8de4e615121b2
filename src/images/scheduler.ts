import type { Bitmap } from './bitmap.js';
import { owner, rendezvous } from './pieces.js';

// Which piece to fetch next, from which provider, and when to give up on a provider: the pure
// decisions of a piece download (no clock, no I/O; the engine feeds it the state and carries out
// what it returns). Table-tested in scheduler.test.ts.
//
// - Watchdog: an attempt that has made no progress for `stallMs` is stalled. Its provider becomes
//   suspect (no new pieces for a while, then one at a time until one completes). iroh-blobs cannot
//   cancel a download, so the stalled attempt keeps hanging until QUIC gives up (~30 s): it is a
//   "zombie", and the piece is started again from another provider ("hedge"). iroh resumes the
//   partial blob, so the hedge fetches only what the stalled one had not written. Duplicates are
//   bounded: a piece has at most one live attempt (two in the endgame), at most
//   `maxStallsPerPiece` zombies, and no hedge starts while `maxZombies` hang in total.
// - Spreading: at most `perProvider` attempts per provider and `maxInFlight` in all. Among the
//   providers that hold a piece, those that hold only part of the image (other downloaders) go
//   first, then the least busy, then the one that sent us least; ties are broken per piece by a
//   hash, so equal providers share the work evenly.
// - Rarest first: pieces held by fewer providers go first (they are the ones other downloaders
//   will want from us), then in order (so the whole-file check can follow the download).
// - First provider relief: a piece only ONE provider holds, while other nodes fetch the same
//   image, is fetched from it by one downloader only: the one rendezvous hashing names among the
//   downloaders. The others wait for it to appear at that downloader and take it from there.
//   Should it not appear within the grace time (the owner died or is slow), they take it from
//   the provider anyway. So the first provider sends each piece about once, whatever N is.
//   The wait lasts while the owner keeps getting pieces (its record's bitmap grows), so a slow
//   owner is waited for and a dead one is not. Downloaders that start together do not see each
//   other at first: a download that sees nobody else takes its first pieces in the order it
//   would most likely own them in any group (its highest rendezvous scores), not from piece 0.
// - Endgame: once every missing piece is in flight, a piece running `endgameFactor` times longer
//   than a typical one is also started from another provider; whichever finishes first wins.

export interface AttemptView {
  provider: string;
  /** When iroh's download started; null while it waits for the rate limiter. */
  startedAt: number | null;
  lastProgressAt: number;
}

export interface PieceView {
  index: number;
  done: boolean;
  /** Attempts that may still complete. */
  live: AttemptView[];
  /** Providers whose attempt on this piece stalled (zombies). */
  stalled: string[];
  /** Providers whose attempt on this piece failed (error, or ended without the piece). */
  failed: string[];
  /** Since when this piece waits for another downloader to fetch it first (null: not waiting). */
  deferredSince: number | null;
}

export interface ProviderView {
  nodeId: string;
  have: Bitmap | 'all';
  /** No new attempts before this time (0: never suspected). */
  suspectUntil: number;
  /** Came back from suspicion: one attempt at a time until one completes. */
  probation: boolean;
  /** Bytes received from it in this download. */
  bytes: number;
}

export interface SchedulerConfig {
  perProvider: number;
  maxInFlight: number;
  stallMs: number;
  maxZombies: number;
  maxStallsPerPiece: number;
  ownerGraceMs: number;
  ownerGraceMaxMs: number;
  /** A download that sees no other downloader takes its first this-many pieces in rendezvous order. */
  earlyPieces: number;
  endgameFactor: number;
}

export const DEFAULT_SCHEDULER: SchedulerConfig = {
  perProvider: 3,
  maxInFlight: 8,
  stallMs: 3000,
  maxZombies: 16,
  maxStallsPerPiece: 3,
  ownerGraceMs: 1500,
  ownerGraceMaxMs: 15_000,
  earlyPieces: 6,
  endgameFactor: 3,
};

export interface SchedulerInput {
  now: number;
  /** This node; and a key that salts the partition (the image hash). */
  self: string;
  salt: string;
  pieces: PieceView[];
  providers: ProviderView[];
  /** Other nodes fetching this image right now (recent partial records), and when each last got a piece. */
  peersFetching: { nodeId: string; lastGainAt: number }[];
  zombies: number;
  /** Typical duration of a completed attempt (ms), null until one completed. */
  typicalPieceMs: number | null;
  config: SchedulerConfig;
}

export type StartKind = 'new' | 'hedge' | 'endgame';

export interface Plan {
  stalls: { index: number; provider: string }[];
  starts: { index: number; provider: string; kind: StartKind }[];
  /** Deferral clocks to set (since: now) or clear (since: null). */
  defer: { index: number; since: number | null }[];
  /** When to plan again at the latest if nothing happens (a stall deadline, a grace or suspicion ending). */
  wakeAt: number | null;
  /** Missing pieces that no usable provider holds right now. */
  unavailable: number[];
}

function holds(p: ProviderView, index: number): boolean {
  return p.have === 'all' || p.have.has(index);
}

export function schedule(input: SchedulerInput): Plan {
  const { now, config: c } = input;
  const plan: Plan = { stalls: [], starts: [], defer: [], wakeAt: null, unavailable: [] };
  const wake = (t: number) => {
    if (plan.wakeAt === null || t < plan.wakeAt) plan.wakeAt = t;
  };
  const busy = new Map<string, number>();
  const suspectNow = new Set<string>();
  for (const p of input.providers) {
    if (p.suspectUntil > now) {
      suspectNow.add(p.nodeId);
      wake(p.suspectUntil);
    }
  }
  let zombies = input.zombies;

  // 1. The watchdog.
  const live = new Map<number, AttemptView[]>();
  const stalledOn = new Map<number, string[]>();
  let finishing = 0;
  for (const piece of input.pieces) {
    if (piece.done) {
      // Duplicates of a piece already here still run in iroh: they occupy their provider.
      for (const a of piece.live) busy.set(a.provider, (busy.get(a.provider) ?? 0) + 1);
      finishing += piece.live.length;
      continue;
    }
    const keep: AttemptView[] = [];
    for (const a of piece.live) {
      if (a.startedAt !== null && now - a.lastProgressAt >= c.stallMs) {
        plan.stalls.push({ index: piece.index, provider: a.provider });
        suspectNow.add(a.provider);
        zombies++;
        continue;
      }
      if (a.startedAt !== null) wake(a.lastProgressAt + c.stallMs);
      keep.push(a);
      busy.set(a.provider, (busy.get(a.provider) ?? 0) + 1);
    }
    live.set(piece.index, keep);
    stalledOn.set(piece.index, [...piece.stalled, ...plan.stalls.filter((s) => s.index === piece.index).map((s) => s.provider)]);
  }
  let inFlight = finishing + [...live.values()].reduce((n, a) => n + a.length, 0);
  const cap = (p: ProviderView) => (p.probation ? 1 : c.perProvider);
  const usable = (p: ProviderView) => !suspectNow.has(p.nodeId) && (busy.get(p.nodeId) ?? 0) < cap(p);
  // How long to wait for another downloader to fetch a piece first: four typical piece times
  // (the owner fetches its share a few at a time); until a piece time is known, the longest.
  const grace = input.typicalPieceMs === null ? c.ownerGraceMaxMs : Math.min(c.ownerGraceMaxMs, Math.max(c.ownerGraceMs, 4 * input.typicalPieceMs));
  const peers = new Map(input.peersFetching.filter((n) => n.nodeId !== input.self).map((n) => [n.nodeId, n.lastGainAt]));
  const downloaders = [input.self, ...peers.keys()];

  // 2. Pieces to start: hedges first, then rarest, then in order.
  const unavailable = plan.unavailable;
  const candidates = input.pieces
    .filter((p) => !p.done && live.get(p.index)!.length === 0)
    .map((p) => {
      const stalled = stalledOn.get(p.index)!;
      const holders = input.providers.filter((pr) => holds(pr, p.index) && !stalled.includes(pr.nodeId));
      const fresh = holders.filter((pr) => !p.failed.includes(pr.nodeId));
      // A provider that failed this piece is tried again only when no other one holds it.
      return { p, stalled, holders: fresh.length > 0 ? fresh : holders };
    });
  const started = input.pieces.filter((p) => p.done || p.live.length > 0 || p.stalled.length > 0).length;
  const fresh = downloaders.length === 1 && started < c.earlyPieces;
  const rarity = (h: ProviderView[]) => h.filter((pr) => !suspectNow.has(pr.nodeId)).length || Number.MAX_SAFE_INTEGER;
  candidates.sort((a, b) => {
    const ha = a.stalled.length > 0 ? 0 : 1;
    const hb = b.stalled.length > 0 ? 0 : 1;
    if (ha !== hb) return ha - hb;
    const ra = rarity(a.holders);
    const rb = rarity(b.holders);
    if (ra !== rb) return ra - rb;
    // A fresh download that sees no other downloader yet may just not see them yet (their
    // records are still on the way): it starts with the pieces that rendezvous hashing most
    // likely gives it in any group, not with piece 0 like everyone else. Order comes back after.
    if (fresh && ra === 1) return rendezvous(`${input.salt}/${b.p.index}`, input.self) - rendezvous(`${input.salt}/${a.p.index}`, input.self);
    return a.p.index - b.p.index;
  });

  for (const { p, stalled, holders } of candidates) {
    if (holders.length === 0 || holders.every((h) => suspectNow.has(h.nodeId))) {
      unavailable.push(p.index);
      continue;
    }
    if (inFlight >= c.maxInFlight) continue; // keep going: deferral clocks and availability still matter
    if (stalled.length > 0 && (stalled.length >= c.maxStallsPerPiece || zombies >= c.maxZombies)) continue;
    const partialHolders = holders.filter((h) => h.have !== 'all');
    const eligible = holders.filter(usable);
    // First provider relief: one holder, others fetching too -> only the piece's owner takes it.
    const single = holders.length === 1 && downloaders.length > 1 && stalled.length === 0;
    if (single) {
      const own = owner(`${input.salt}/${p.index}`, downloaders);
      if (own !== input.self) {
        // Wait while the owner keeps getting pieces: a slow owner is waited for, a dead one not.
        const since = Math.max(p.deferredSince ?? now, peers.get(own!) ?? 0);
        if (p.deferredSince === null) plan.defer.push({ index: p.index, since: now });
        if (now - since < grace) {
          wake(since + grace);
          continue;
        }
      }
    } else if (p.deferredSince !== null) plan.defer.push({ index: p.index, since: null });
    if (eligible.length === 0) continue;
    // A piece another downloader has, while that one is busy: wait for it rather than load a
    // provider that holds everything (it is what every downloader would otherwise lean on).
    const partialFree = eligible.filter((h) => h.have !== 'all');
    if (partialHolders.length > 0 && partialFree.length === 0 && holders.length > 1 && partialHolders.some((h) => !suspectNow.has(h.nodeId))) continue;
    const pool = partialFree.length > 0 ? partialFree : eligible;
    pool.sort((a, b) => {
      const ba = busy.get(a.nodeId) ?? 0;
      const bb = busy.get(b.nodeId) ?? 0;
      if (ba !== bb) return ba - bb;
      if (a.bytes !== b.bytes) return a.bytes - b.bytes;
      return rendezvous(`${input.salt}/${p.index}`, b.nodeId) - rendezvous(`${input.salt}/${p.index}`, a.nodeId);
    });
    const chosen = pool[0]!;
    plan.starts.push({ index: p.index, provider: chosen.nodeId, kind: stalled.length > 0 ? 'hedge' : 'new' });
    busy.set(chosen.nodeId, (busy.get(chosen.nodeId) ?? 0) + 1);
    inFlight++;
  }

  // 3. Endgame: nothing left to start, room to spare -> duplicate the slowest running pieces.
  const startedNow = new Set(plan.starts.map((s) => s.index));
  const waitingToStart = candidates.some(({ p }) => !startedNow.has(p.index) && !unavailable.includes(p.index));
  if (!waitingToStart && input.typicalPieceMs !== null && inFlight < c.maxInFlight && zombies < c.maxZombies) {
    const limit = c.endgameFactor * Math.max(input.typicalPieceMs, 1);
    const slow = input.pieces
      .filter((p) => !p.done && live.get(p.index)!.length === 1)
      .map((p) => ({ p, a: live.get(p.index)![0]! }))
      .filter(({ a }) => a.startedAt !== null)
      .sort((x, y) => x.a.startedAt! - y.a.startedAt!);
    for (const { p, a } of slow) {
      if (inFlight >= c.maxInFlight) break;
      const elapsed = now - a.startedAt!;
      if (elapsed < limit) {
        wake(a.startedAt! + limit);
        continue;
      }
      const stalled = stalledOn.get(p.index)!;
      const other = input.providers.filter((pr) => pr.nodeId !== a.provider && holds(pr, p.index) && !stalled.includes(pr.nodeId) && !p.failed.includes(pr.nodeId) && usable(pr));
      if (other.length === 0) continue;
      other.sort((x, y) => (busy.get(x.nodeId) ?? 0) - (busy.get(y.nodeId) ?? 0) || x.bytes - y.bytes);
      const chosen = other[0]!;
      plan.starts.push({ index: p.index, provider: chosen.nodeId, kind: 'endgame' });
      busy.set(chosen.nodeId, (busy.get(chosen.nodeId) ?? 0) + 1);
      inFlight++;
    }
  }
  return plan;
}
