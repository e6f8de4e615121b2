import { describe, it, expect } from 'vitest';
import { RawNode } from './raw-node.js';
import { MemoryStorage } from './storage.js';
import { RaftError, type Config, type Ready } from './types.js';

const cfg = (id: string, extra: Partial<Config> = {}): Config => ({
  id,
  electionTick: 10,
  heartbeatTick: 1,
  preVote: false,
  checkQuorum: false,
  maxInflight: 16,
  maxSizePerMsg: 1 << 20,
  rand: () => 0.5,
  ...extra,
});

function persist(s: MemoryStorage, rd: Ready): void {
  if (rd.snapshot) s.applySnapshot(rd.snapshot);
  s.append(rd.entries);
  if (rd.hardState) s.setHardState(rd.hardState);
}

describe('RawNode', () => {
  it('a single voter elects itself and commits proposals through Ready/advance', () => {
    const s = new MemoryStorage();
    s.bootstrap({ voters: ['a'], learners: [] });
    const n = new RawNode(cfg('a'), s);
    expect(n.hasReady()).toBe(false);
    n.campaign();
    const rd = n.ready();
    expect(rd.softState).toEqual({ leader: 'a', role: 'leader' });
    expect(rd.hardState).toEqual({ term: 2, vote: 'a', commit: 2 });
    expect(rd.mustSync).toBe(true);
    expect(rd.entries.map((e) => e.index)).toEqual([2]); // the new leader's empty entry
    expect(rd.committedEntries.map((e) => e.index)).toEqual([2]); // applied after the write
    persist(s, rd);
    n.advance(rd);
    n.propose(new TextEncoder().encode('x'));
    const rd2 = n.ready();
    expect(rd2.entries.map((e) => new TextDecoder().decode(e.data))).toEqual(['x']);
    expect(rd2.hardState?.commit).toBe(3);
    expect(rd2.mustSync).toBe(true);
    persist(s, rd2);
    n.advance(rd2);
    expect(n.status()).toMatchObject({ role: 'leader', term: 2, commit: 3, applied: 3, lastIndex: 3 });
  });

  it('allows one outstanding Ready at a time, and keeps stepping meanwhile', () => {
    const s = new MemoryStorage();
    s.bootstrap({ voters: ['a'], learners: [] });
    const n = new RawNode(cfg('a'), s);
    n.campaign();
    const rd = n.ready();
    expect(() => n.ready()).toThrow(/before advance/);
    n.propose(new Uint8Array([1])); // accepted while the first Ready is being persisted
    expect(n.hasReady()).toBe(false);
    persist(s, rd);
    n.advance(rd);
    expect(n.hasReady()).toBe(true);
    expect(n.ready().entries.map((e) => e.index)).toEqual([3]);
    expect(() => n.advance({ ...rd })).toThrow(/not the outstanding one/);
  });

  it('refuses proposals on a follower with the leader as a hint, and local message types on step()', () => {
    const s = new MemoryStorage();
    s.bootstrap({ voters: ['a', 'b'], learners: [] });
    const n = new RawNode(cfg('a'), s);
    let err: unknown;
    try {
      n.propose(new Uint8Array([1]));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RaftError);
    expect((err as RaftError).code).toBe('not-leader');
    expect(() => n.step({ type: 'MsgHup' as never, from: 'b', to: 'a', term: 1, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, context: '' })).toThrow(
      /not a network message/,
    );
  });

  it('restarts from storage: term, vote, commit and configuration; applied starts at the snapshot', () => {
    const s = new MemoryStorage();
    s.bootstrap({ voters: ['a', 'b', 'c'], learners: [] });
    s.append([2, 3, 4].map((index) => ({ index, term: 3, type: 'normal' as const, data: new Uint8Array() })));
    s.setHardState({ term: 5, vote: 'b', commit: 3 });
    const n = new RawNode(cfg('a'), s);
    expect(n.status()).toMatchObject({ term: 5, vote: 'b', commit: 3, applied: 1, lastIndex: 4, role: 'follower' });
    expect(n.confState()).toEqual({ voters: ['a', 'b', 'c'], learners: [] });
    const rd = n.ready();
    expect(rd.committedEntries.map((e) => e.index)).toEqual([2, 3]); // replayed to the state machine
    expect(rd.hardState).toBeUndefined(); // nothing new to persist
  });

  it('the voteNotPersisted test switch leaves the vote out of the HardState it hands out', () => {
    const s = new MemoryStorage();
    s.bootstrap({ voters: ['a', 'b', 'c'], learners: [] });
    const n = new RawNode(cfg('a', { bugs: { voteNotPersisted: true } }), s);
    n.campaign();
    const rd = n.ready();
    expect(rd.hardState).toEqual({ term: 2, vote: null, commit: 1 });
    expect(n.status().vote).toBe('a');
  });

  it('validates its configuration', () => {
    const s = new MemoryStorage();
    expect(() => new RawNode(cfg(''), s)).toThrow(/id/);
    expect(() => new RawNode(cfg('a', { electionTick: 1, heartbeatTick: 1 }), s)).toThrow(/electionTick/);
    expect(() => new RawNode(cfg('a', { maxInflight: 0 }), s)).toThrow(/maxInflight/);
  });
});
