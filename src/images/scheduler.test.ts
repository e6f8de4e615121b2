import { describe, expect, it } from 'vitest';
import { Bitmap } from './bitmap.js';
import { owner, rendezvous } from './pieces.js';
import { DEFAULT_SCHEDULER, schedule, type PieceView, type ProviderView, type SchedulerInput } from './scheduler.js';

// Table tests of the piece scheduler: each case is a situation and what must (not) be decided.

const N = 8;
const cfg = { ...DEFAULT_SCHEDULER, perProvider: 2, maxInFlight: 4, stallMs: 1000, ownerGraceMs: 500, ownerGraceMaxMs: 5000, maxZombies: 4, maxStallsPerPiece: 2, endgameFactor: 3, earlyPieces: 1 };

function pieces(n: number, over: Record<number, Partial<PieceView>> = {}): PieceView[] {
  return Array.from({ length: n }, (_, index) => ({ index, done: false, live: [], stalled: [], failed: [], deferredSince: null, ...over[index] }));
}

function seed(nodeId: string, over: Partial<ProviderView> = {}): ProviderView {
  return { nodeId, have: 'all', suspectUntil: 0, probation: false, bytes: 0, ...over };
}

function partial(nodeId: string, has: number[], n = N, over: Partial<ProviderView> = {}): ProviderView {
  return { nodeId, have: Bitmap.of(n, has), suspectUntil: 0, probation: false, bytes: 0, ...over };
}

function input(over: Partial<SchedulerInput>): SchedulerInput {
  return { now: 10_000, self: 'me', salt: 'img', pieces: pieces(N), providers: [seed('A')], peersFetching: [], zombies: 0, typicalPieceMs: null, config: cfg, ...over };
}

const live = (provider: string, startedAt: number | null, lastProgressAt = startedAt ?? 0) => ({ provider, startedAt, lastProgressAt });

interface Case {
  name: string;
  in: Partial<SchedulerInput>;
  starts?: [number, string, string][];
  startsCount?: number;
  stalls?: [number, string][];
  defer?: [number, number | null][];
  unavailable?: number[];
  check?: (p: ReturnType<typeof schedule>) => void;
}

const cases: Case[] = [
  {
    name: 'one provider: up to its per-provider limit, in order',
    in: { pieces: pieces(N, { 7: { done: true } }) },
    starts: [
      [0, 'A', 'new'],
      [1, 'A', 'new'],
    ],
  },
  {
    name: 'a fresh download alone with one provider starts with the pieces it would most likely own',
    in: {},
    check: (p) => {
      const byScore = Array.from({ length: N }, (_, i) => i).sort((a, b) => rendezvous(`img/${b}`, 'me') - rendezvous(`img/${a}`, 'me'));
      expect(p.starts.map((s) => s.index)).toEqual(byScore.slice(0, 2));
    },
  },
  {
    name: 'the rendezvous order lasts for the first earlyPieces pieces started',
    in: { pieces: pieces(N, { 7: { done: true } }), config: { ...cfg, earlyPieces: 3 } },
    check: (p) => {
      const byScore = Array.from({ length: 7 }, (_, i) => i).sort((a, b) => rendezvous(`img/${b}`, 'me') - rendezvous(`img/${a}`, 'me'));
      expect(p.starts.map((s) => s.index)).toEqual(byScore.slice(0, 2));
    },
  },
  {
    name: 'two whole holders: spread evenly, up to the total in flight',
    in: { providers: [seed('A'), seed('B')] },
    startsCount: 4,
    check: (p) => {
      expect(p.starts.filter((s) => s.provider === 'A')).toHaveLength(2);
      expect(p.starts.filter((s) => s.provider === 'B')).toHaveLength(2);
      expect(p.starts.map((s) => s.index).sort()).toEqual([0, 1, 2, 3]);
    },
  },
  {
    name: 'pieces already here or in flight are not started again',
    in: { pieces: pieces(4, { 0: { done: true }, 1: { live: [live('A', 9_900)] } }), providers: [seed('A'), seed('B')] },
    check: (p) => expect(p.starts.map((s) => s.index).sort()).toEqual([2, 3]),
  },
  {
    name: 'a duplicate of a piece already here still occupies its provider',
    in: { pieces: pieces(4, { 0: { done: true, live: [live('A', 9_900)] }, 1: { live: [live('A', 9_900)] } }) },
    starts: [],
  },
  {
    name: 'watchdog: no progress for stallMs -> stalled, provider suspect, piece hedged elsewhere',
    in: { pieces: pieces(2, { 0: { live: [live('A', 8_000, 8_500)] }, 1: { done: true } }), providers: [seed('A'), seed('B')] },
    stalls: [[0, 'A']],
    starts: [[0, 'B', 'hedge']],
  },
  {
    name: 'an attempt still waiting for the rate limiter never stalls',
    in: { pieces: pieces(1, { 0: { live: [live('A', null, 0)] } }), providers: [seed('A'), seed('B')] },
    stalls: [],
    starts: [],
  },
  {
    name: 'progress within stallMs: no stall, wake at the deadline',
    in: { pieces: pieces(1, { 0: { live: [live('A', 9_000, 9_400)] } }) },
    stalls: [],
    check: (p) => expect(p.wakeAt).toBe(10_400),
  },
  {
    name: 'the only provider stalls: nothing to hedge to, the piece waits',
    in: { pieces: pieces(1, { 0: { live: [live('A', 8_000, 8_000)] } }) },
    stalls: [[0, 'A']],
    starts: [],
    unavailable: [0],
  },
  {
    name: 'a suspect provider gets nothing until its time is up',
    in: { providers: [seed('A', { suspectUntil: 12_000 }), seed('B')] },
    check: (p) => {
      expect(p.starts.every((s) => s.provider === 'B')).toBe(true);
      expect(p.wakeAt).toBe(12_000);
    },
  },
  {
    name: 'a provider on probation gets one attempt at a time',
    in: { providers: [seed('A', { probation: true })], pieces: pieces(N, { 7: { done: true } }) },
    starts: [[0, 'A', 'new']],
  },
  {
    name: 'a node holding part of the image serves its pieces before the whole holders do',
    in: { providers: [seed('A'), partial('P', [2, 3])], pieces: pieces(N, { 7: { done: true } }) },
    check: (p) => {
      expect(p.starts.filter((s) => s.provider === 'P').map((s) => s.index).sort()).toEqual([2, 3]);
      expect(p.starts.filter((s) => s.provider === 'A').map((s) => s.index).sort()).toEqual([0, 1]);
    },
  },
  {
    name: 'a piece a busy partial holder has waits for it rather than load the whole holder',
    in: {
      pieces: pieces(4, { 0: { live: [live('P', 9_900)] }, 1: { live: [live('P', 9_900)] } }),
      providers: [seed('A'), partial('P', [0, 1, 2], 4)],
    },
    // piece 2 waits for P; piece 3 only A has
    starts: [[3, 'A', 'new']],
  },
  {
    name: 'rarest first: the piece one provider has goes before pieces two have',
    in: { pieces: pieces(3), providers: [partial('P', [0, 1], 3), partial('Q', [0, 1, 2], 3)], config: { ...cfg, maxInFlight: 1 } },
    starts: [[2, 'Q', 'new']],
  },
  {
    name: 'hedges go before new pieces',
    in: { pieces: pieces(3, { 2: { stalled: ['A'] } }), providers: [seed('A', { suspectUntil: 20_000 }), seed('B')], config: { ...cfg, perProvider: 1 } },
    starts: [[2, 'B', 'hedge']],
  },
  {
    name: 'a piece that stalled maxStallsPerPiece times waits for its zombies',
    in: { pieces: pieces(1, { 0: { stalled: ['A', 'B'] } }), providers: [seed('A'), seed('B'), seed('C')] },
    starts: [],
  },
  {
    name: 'no hedge while maxZombies hang',
    in: { pieces: pieces(2, { 0: { stalled: ['A'] } }), providers: [seed('A'), seed('B')], zombies: 4 },
    check: (p) => expect(p.starts.map((s) => [s.index, s.kind])).toEqual([[1, 'new']]),
  },
  {
    name: 'a provider that failed a piece is avoided for it',
    in: { pieces: pieces(1, { 0: { failed: ['A'] } }), providers: [seed('A'), seed('B')] },
    starts: [[0, 'B', 'new']],
  },
  {
    name: '... unless it is the only one that has it',
    in: { pieces: pieces(1, { 0: { failed: ['A'] } }), providers: [seed('A')] },
    starts: [[0, 'A', 'new']],
  },
  {
    name: 'a piece nobody has is unavailable',
    in: { pieces: pieces(3), providers: [partial('P', [0, 1], 3)] },
    unavailable: [2],
  },
  {
    name: 'endgame: all in flight, one running 3x longer than typical -> duplicate from another provider',
    in: {
      pieces: pieces(2, { 0: { live: [live('A', 6_000, 9_900)] }, 1: { live: [live('B', 9_500, 9_900)] } }),
      providers: [seed('A'), seed('B')],
      typicalPieceMs: 1000,
    },
    starts: [[0, 'B', 'endgame']],
  },
  {
    name: 'no endgame before 3x typical',
    in: { pieces: pieces(1, { 0: { live: [live('A', 8_000, 9_900)] } }), providers: [seed('A'), seed('B')], typicalPieceMs: 1000 },
    starts: [],
    check: (p) => expect(p.wakeAt).toBe(10_900),
  },
];

describe('schedule', () => {
  for (const c of cases) {
    it(c.name, () => {
      const p = schedule(input(c.in));
      if (c.starts) expect(p.starts.map((s) => [s.index, s.provider, s.kind])).toEqual(c.starts);
      if (c.startsCount !== undefined) expect(p.starts).toHaveLength(c.startsCount);
      if (c.stalls) expect(p.stalls.map((s) => [s.index, s.provider])).toEqual(c.stalls);
      if (c.defer) expect(p.defer.map((d) => [d.index, d.since])).toEqual(c.defer);
      if (c.unavailable) expect(p.unavailable).toEqual(c.unavailable);
      c.check?.(p);
    });
  }
});

describe('first provider relief (one holder, several downloaders)', () => {
  const peerIds = ['n1', 'n2', 'n3'];
  const peers = peerIds.map((nodeId) => ({ nodeId, lastGainAt: 0 }));
  const all = ['me', ...peerIds];
  const mine = Array.from({ length: N }, (_, i) => i).filter((i) => owner(`img/${i}`, all) === 'me');
  const theirs = Array.from({ length: N }, (_, i) => i).filter((i) => !mine.includes(i));

  it('each downloader takes from the one holder only the pieces rendezvous hashing gives it', () => {
    const p = schedule(input({ peersFetching: peers, typicalPieceMs: 100, config: { ...cfg, perProvider: N, maxInFlight: N } }));
    expect(p.starts.map((s) => s.index).sort((a, b) => a - b)).toEqual(mine);
    expect(p.defer.map((d) => d.index).sort((a, b) => a - b)).toEqual(theirs);
    expect(p.defer.every((d) => d.since === 10_000)).toBe(true);
    expect(p.wakeAt).toBe(10_500);
  });

  it('until a piece time is known, the wait is the longest', () => {
    const p = schedule(input({ peersFetching: peers, now: 14_000, pieces: pieces(N, Object.fromEntries(theirs.map((i) => [i, { deferredSince: 10_000 }]))), config: { ...cfg, perProvider: N, maxInFlight: N } }));
    expect(p.starts.map((s) => s.index).filter((i) => theirs.includes(i))).toEqual([]);
    expect(p.wakeAt).toBe(15_000);
  });

  it('the partition covers every piece exactly once across the downloaders', () => {
    const owners = all.map((self) => {
      const p = schedule(input({ self, typicalPieceMs: 100, peersFetching: all.filter((x) => x !== self).map((nodeId) => ({ nodeId, lastGainAt: 0 })), config: { ...cfg, perProvider: N, maxInFlight: N } }));
      return p.starts.map((s) => s.index);
    });
    expect(owners.flat().sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, i) => i));
  });

  it('a deferred piece is taken from the holder once the grace time is over', () => {
    const minesDone = Object.fromEntries(mine.map((i) => [i, { done: true }]));
    const waiting = Object.fromEntries(theirs.map((i) => [i, { deferredSince: 10_000 }]));
    expect(schedule(input({ now: 10_400, typicalPieceMs: 100, peersFetching: peers, pieces: pieces(N, { ...minesDone, ...waiting }) })).starts).toEqual([]);
    const later = schedule(input({ now: 10_600, typicalPieceMs: 100, peersFetching: peers, pieces: pieces(N, { ...minesDone, ...waiting }) }));
    expect(later.starts.map((s) => s.index)).toEqual(theirs.slice(0, 2));
  });

  it('the grace time grows with the typical piece time', () => {
    const p = schedule(input({ peersFetching: peers, typicalPieceMs: 400, pieces: pieces(N, Object.fromEntries(theirs.map((i) => [i, { deferredSince: 10_000 }]))), now: 10_600 }));
    expect(p.starts.map((s) => s.index).filter((i) => theirs.includes(i))).toEqual([]);
    expect(p.wakeAt).toBe(11_600);
  });

  it('the wait goes on while the owner keeps getting pieces', () => {
    const t = theirs[0]!;
    const own = owner(`img/${t}`, all)!;
    const gaining = peers.map((p) => (p.nodeId === own ? { ...p, lastGainAt: 10_400 } : p));
    const waiting = Object.fromEntries(theirs.map((i) => [i, { deferredSince: 10_000 }]));
    const p = schedule(input({ now: 10_600, typicalPieceMs: 100, peersFetching: gaining, pieces: pieces(N, waiting), config: { ...cfg, perProvider: N, maxInFlight: N } }));
    expect(p.starts.map((s) => s.index)).not.toContain(t);
    expect(p.wakeAt).toBe(10_900);
  });

  it('once another downloader has the piece, it comes from there and the wait ends', () => {
    const t = theirs[0]!;
    const p = schedule(input({ peersFetching: peers, providers: [seed('A'), partial('n1', [t])], pieces: pieces(N, { [t]: { deferredSince: 10_000 } }), config: { ...cfg, perProvider: N, maxInFlight: N } }));
    expect(p.starts.find((s) => s.index === t)).toEqual({ index: t, provider: 'n1', kind: 'new' });
  });

  it('alone, a downloader takes everything from the one holder', () => {
    const p = schedule(input({ config: { ...cfg, perProvider: N, maxInFlight: N } }));
    expect(p.starts).toHaveLength(N);
    expect(p.defer).toEqual([]);
  });
});
