import { describe, it, expect } from 'vitest';
import { RaftError, type Message } from '../../src/raft/core/index.js';
import { Harness } from './harness.js';

// Scenario tests of the Raft core: small clusters driven step by step, one behaviour each.

const types = (ms: readonly Message[]): string[] => ms.map((m) => m.type);

describe('election', () => {
  it('elects exactly one leader, and everyone follows it', () => {
    const h = new Harness(['a', 'b', 'c']);
    for (let i = 0; i < 30 && h.leader() === undefined; i++) h.tickAll();
    const l = h.leader();
    expect(l).toBeDefined();
    const leaders = [...h.nodes.values()].filter((n) => n.raw!.role === 'leader');
    expect(leaders).toHaveLength(1);
    for (const n of h.nodes.values()) expect(n.raw!.leader).toBe(l);
  });

  it('a candidate with a shorter log loses; the up-to-date one wins', () => {
    const h = new Harness(['a', 'b', 'c']);
    h.elect('a');
    h.isolate('c');
    h.propose('a', 'x'); // a and b have x, c does not
    h.heal();
    h.crash('a');
    h.raw('c').campaign();
    h.stabilize();
    expect(h.raw('c').role).not.toBe('leader'); // b refuses: c's log is behind
    h.raw('b').campaign();
    h.stabilize();
    expect(h.raw('b').role).toBe('leader');
  });

  it('a vote survives a restart: a node does not vote twice in one term', () => {
    const run = (voteNotPersisted: boolean): string[] => {
      const h = new Harness(['a', 'b', 'c'], { bugs: { voteNotPersisted } });
      h.elect('a');
      h.crash('a');
      h.filter = (m) => !(m.type === 'MsgApp' && m.from === 'c'); // c's entries stay with c
      h.raw('c').campaign(); // term 3: b votes for c
      h.stabilize();
      expect(h.raw('c').role).toBe('leader');
      h.crash('b');
      h.start('b');
      h.isolate('c');
      h.start('a');
      h.raw('a').campaign(); // a asks b for a vote in term 3 too
      h.stabilize();
      return [...h.nodes.values()].filter((n) => n.raw!.role === 'leader' && n.raw!.term === 3).map((n) => n.id);
    };
    expect(run(false)).toEqual(['c']);
    expect(run(true).sort()).toEqual(['a', 'c']); // the forgotten vote elects a second leader
  });
});

describe('pre-vote', () => {
  it('keeps a partitioned node from raising its term and disrupting the leader when it returns', () => {
    const h = new Harness(['a', 'b', 'c'], { preVote: true });
    h.elect('a');
    const term = h.raw('a').term;
    h.isolate('c');
    h.tick('c', 100); // many election timeouts alone
    expect(h.raw('c').term).toBe(term); // pre-votes failed; the term never moved
    expect(h.raw('c').role).not.toBe('leader');
    h.heal();
    h.tickAll(5);
    expect(h.leader()).toBe('a');
    expect(h.raw('a').term).toBe(term);
  });

  it('without pre-vote the same node comes back with a higher term and forces an election', () => {
    const h = new Harness(['a', 'b', 'c'], { preVote: false });
    h.elect('a');
    const term = h.raw('a').term;
    h.isolate('c');
    h.tick('c', 100);
    expect(h.raw('c').term).toBeGreaterThan(term);
    h.heal();
    h.tickAll(40);
    expect(h.raw('a').term).toBeGreaterThan(term); // the leader was deposed
  });
});

describe('check-quorum and the leader lease', () => {
  it('a leader that cannot hear a quorum steps down after an election timeout', () => {
    const h = new Harness(['a', 'b', 'c'], { checkQuorum: true });
    h.elect('a');
    h.isolate('a');
    h.tick('a', 9);
    expect(h.raw('a').role).toBe('leader');
    h.tick('a', 12);
    expect(h.raw('a').role).toBe('follower');
  });

  it('without check-quorum an isolated leader stays leader', () => {
    const h = new Harness(['a', 'b', 'c'], { checkQuorum: false });
    h.elect('a');
    h.isolate('a');
    h.tick('a', 50);
    expect(h.raw('a').role).toBe('leader');
  });

  it('followers that hear from a live leader ignore a vote request from a higher term', () => {
    const h = new Harness(['a', 'b', 'c'], { checkQuorum: true });
    h.elect('a');
    const term = h.raw('a').term;
    h.raw('c').campaign(); // c would disrupt; b and a are inside their lease
    h.stabilize();
    expect(h.raw('b').term).toBe(term);
    expect(h.raw('a').role).toBe('leader');
    expect(h.raw('c').role).not.toBe('leader');
  });
});

describe('log replication', () => {
  it('replicates, commits and applies proposals on every node', () => {
    const h = new Harness(['a', 'b', 'c']);
    h.elect('a');
    for (let i = 0; i < 10; i++) h.propose('a', `x${i}`);
    for (const n of h.nodes.values()) {
      expect(n.applied).toEqual(Array.from({ length: 10 }, (_, i) => `x${i}`));
      expect(n.raw!.log().committed).toBe(h.raw('a').log().lastIndex());
    }
  });

  it('batches proposals made between two Readies into one MsgApp per follower', () => {
    const h = new Harness(['a', 'b', 'c']);
    h.elect('a');
    const before = h.delivered.length;
    const raw = h.raw('a');
    for (let i = 0; i < 50; i++) raw.propose(new TextEncoder().encode(`p${i}`));
    h.stabilize();
    const apps = h.delivered.slice(before).filter((m) => m.type === 'MsgApp' && m.entries.length > 0);
    expect(apps).toHaveLength(2);
    expect(apps.every((m) => m.entries.length === 50)).toBe(true);
  });

  it('respects maxSizePerMsg and pipelines up to maxInflight messages', () => {
    const h = new Harness(['a', 'b', 'c'], { maxSizePerMsg: 1, maxInflight: 4 });
    h.elect('a');
    h.cutLink('b', 'a'); // b's acks are lost: the window fills
    h.cutLink('c', 'a');
    const before = h.delivered.length;
    const raw = h.raw('a');
    for (let i = 0; i < 20; i++) raw.propose(new TextEncoder().encode(`p${i}`));
    h.stabilize();
    const toB = h.delivered.slice(before).filter((m) => m.type === 'MsgApp' && m.to === 'b');
    expect(toB).toHaveLength(4); // one entry per message, four in flight
    expect(toB.every((m) => m.entries.length === 1)).toBe(true);
    h.heal();
    h.tickAll(3); // heartbeats free the window; everything catches up
    for (const n of h.nodes.values()) expect(n.applied).toHaveLength(20);
  });

  it('replaces a deposed leader’s uncommitted entries, with few round trips thanks to the conflict hint', () => {
    const h = new Harness(['a', 'b', 'c']);
    h.elect('a');
    h.propose('a', 'committed');
    h.isolate('a');
    for (let i = 0; i < 30; i++) h.raw('a').propose(new TextEncoder().encode(`lost${i}`));
    h.stabilize();
    h.raw('b').campaign();
    h.stabilize();
    expect(h.leader()).toBe('b');
    for (let i = 0; i < 5; i++) h.propose('b', `kept${i}`);
    h.heal();
    const before = h.delivered.length;
    h.tickAll(2);
    const rejects = h.delivered.slice(before).filter((m) => m.type === 'MsgAppResp' && m.from === 'a' && m.reject);
    expect(rejects.length).toBeLessThanOrEqual(2); // not one per conflicting entry
    const want = ['committed', ...Array.from({ length: 5 }, (_, i) => `kept${i}`)];
    for (const n of h.nodes.values()) expect(n.applied).toEqual(want);
    expect(h.raw('a').log().lastIndex()).toBe(h.raw('b').log().lastIndex());
  });

  it('only commits an entry of an earlier term once an entry of the current term is replicated (figure 8)', () => {
    // a (term 2) leaves x on a and b only; e (term 3) leaves y on e only; a returns, wins term 4
    // and copies x to c. x is now on a majority, but e could still be elected (its last term 3 beats
    // x's 2) and overwrite it: a must not commit x until its own term-4 entry is on a majority.
    const run = (bug: boolean): { commitAfterCopy: number; x: number } => {
      const h = new Harness(['a', 'b', 'c', 'd', 'e'], { maxSizePerMsg: 1, bugs: { commitOldTermByCount: bug } });
      h.elect('a');
      h.filter = (m) => !(m.type === 'MsgApp' && m.from === 'a' && m.to !== 'b');
      h.propose('a', 'x');
      const x = h.raw('a').log().lastIndex();
      h.crash('a');
      h.filter = (m) => !(m.type === 'MsgApp' && m.from === 'e');
      h.raw('e').campaign();
      h.stabilize();
      expect(h.raw('e').role).toBe('leader');
      h.crash('e');
      h.start('a');
      // a only reaches b and c; c gets x, but never a's own new entry.
      const cHasX = (): boolean => h.node('c').raw!.log().term(x) === 2;
      h.filter = (m) =>
        !(m.from === 'a' && m.to !== 'b' && m.to !== 'c') &&
        !(m.type === 'MsgApp' && m.to === 'c' && cHasX() && m.entries.some((e) => e.term > 2));
      for (let i = 0; i < 3 && h.raw('a').role !== 'leader'; i++) {
        h.raw('a').campaign(); // term 3 is taken (c voted for e); term 4 works
        h.stabilize();
      }
      expect(h.raw('a').role).toBe('leader');
      expect(h.raw('c').log().term(x)).toBe(h.raw('b').log().term(x)); // x is on a, b, c
      return { commitAfterCopy: h.raw('a').log().committed, x };
    };
    const good = run(false);
    expect(good.commitAfterCopy).toBeLessThan(good.x);
    const bad = run(true);
    expect(bad.commitAfterCopy).toBeGreaterThanOrEqual(bad.x); // the bug commits it anyway
  });
});

describe('snapshots', () => {
  it('a follower that needs compacted entries gets the snapshot and converges', () => {
    const h = new Harness(['a', 'b', 'c']);
    h.elect('a');
    h.crash('c');
    for (let i = 0; i < 20; i++) h.propose('a', `v${i}`);
    h.compact('a');
    h.compact('b');
    h.start('c');
    const before = h.delivered.length;
    h.tickAll(3);
    const snaps = h.delivered.slice(before).filter((m) => m.type === 'MsgSnap');
    expect(snaps.length).toBeGreaterThanOrEqual(1);
    h.raw('a').reportSnapshot('c', true);
    h.propose('a', 'after');
    h.tickAll(3);
    expect(h.node('c').applied).toEqual(h.node('a').applied);
    expect(h.node('c').applied.at(-1)).toBe('after');
  });

  it('a failed snapshot sends the follower back to probing and it is retried', () => {
    const h = new Harness(['a', 'b', 'c']);
    h.elect('a');
    h.crash('c');
    for (let i = 0; i < 5; i++) h.propose('a', `v${i}`);
    h.compact('a');
    h.start('c');
    h.filter = (m) => m.type !== 'MsgSnap';
    h.tickAll(2);
    expect(h.raw('a').status().progress?.c?.state).toBe('snapshot');
    h.raw('a').reportSnapshot('c', false);
    expect(h.raw('a').status().progress?.c?.state).toBe('probe');
    h.filter = undefined;
    h.tickAll(3);
    expect(h.node('c').applied).toEqual(h.node('a').applied);
  });
  it('a lost snapshot nobody reported on is sent again after a few election timeouts', () => {
    const h = new Harness(['a', 'b', 'c']);
    h.elect('a');
    h.crash('c');
    for (let i = 0; i < 5; i++) h.propose('a', `v${i}`);
    h.compact('a');
    h.start('c');
    h.filter = (m) => m.type !== 'MsgSnap';
    h.tickAll(2);
    expect(h.raw('a').status().progress?.c?.state).toBe('snapshot');
    h.filter = undefined;
    h.tickAll(15);
    expect(h.raw('a').status().progress?.c?.state).toBe('snapshot'); // still waiting
    h.tickAll(30);
    expect(h.node('c').applied).toEqual(h.node('a').applied);
  });
});

describe('membership', () => {
  it('a learner catches up, never votes or counts for quorum, and can be promoted', () => {
    const h = new Harness(['a', 'b', 'c']);
    h.elect('a');
    h.propose('a', 'v1');
    h.add('d');
    h.proposeConfChange('a', { changes: [{ type: 'addLearner', node: 'd' }] });
    h.tickAll(3);
    expect(h.raw('d').role).toBe('learner');
    expect(h.node('d').applied).toEqual(['v1']);
    // A learner does not campaign.
    h.tick('d', 50);
    expect(h.raw('d').role).toBe('learner');
    // Quorum is still 2 of the 3 voters: with b and c down, nothing commits even though d acks.
    h.crash('b');
    h.crash('c');
    const commit = h.raw('a').log().committed;
    h.propose('a', 'v2');
    expect(h.raw('a').log().committed).toBe(commit);
    h.start('b');
    h.start('c');
    h.tickAll(3);
    expect(h.node('d').applied).toEqual(['v1', 'v2']);
    h.proposeConfChange('a', { changes: [{ type: 'addNode', node: 'd' }] });
    h.tickAll(2);
    expect(h.raw('a').confState().voters).toEqual(['a', 'b', 'c', 'd']);
    expect(h.raw('d').role).toBe('follower');
  });

  it('a new leader may not propose a conf change before committing an entry of its term, and only one at a time', () => {
    const h = new Harness(['a', 'b', 'c']);
    h.elect('a');
    h.propose('a', 'v1');
    // b wins an election but its entries do not get out: its empty entry stays uncommitted.
    h.filter = (m) => !(m.type === 'MsgApp' && m.from === 'b');
    h.raw('b').campaign();
    h.stabilize();
    const b = h.raw('b');
    expect(b.role).toBe('leader');
    expect(() => b.proposeConfChange({ changes: [{ type: 'removeNode', node: 'c' }] })).toThrow(/not committed an entry of its term/);
    h.filter = undefined;
    h.tickAll(2);
    b.proposeConfChange({ changes: [{ type: 'addLearner', node: 'd' }] });
    let err: unknown;
    try {
      b.proposeConfChange({ changes: [{ type: 'addLearner', node: 'e' }] });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RaftError);
    expect((err as RaftError).code).toBe('conf-change-pending');
  });

  it('replaces a voter through a joint configuration that is left automatically', () => {
    const h = new Harness(['a', 'b', 'c']);
    h.elect('a');
    h.add('d');
    h.proposeConfChange('a', { changes: [{ type: 'addLearner', node: 'd' }] });
    h.tickAll(2);
    h.proposeConfChange('a', { changes: [{ type: 'addNode', node: 'd' }, { type: 'removeNode', node: 'c' }] });
    h.tickAll(3);
    const cs = h.raw('a').confState();
    expect(cs.voters).toEqual(['a', 'b', 'd']);
    expect(cs.votersOutgoing ?? []).toEqual([]);
    h.crash('c');
    h.propose('a', 'still-works');
    expect(h.node('d').applied).toContain('still-works');
  });

  it('an explicit joint configuration needs both majorities until it is left', () => {
    const h = new Harness(['a', 'b', 'c', 'd']);
    h.elect('a');
    h.proposeConfChange('a', { transition: 'explicit', changes: [{ type: 'removeNode', node: 'c' }, { type: 'removeNode', node: 'd' }] });
    h.tickAll(2);
    expect(h.raw('a').confState().votersOutgoing).toEqual(['a', 'b', 'c', 'd']);
    // The old half needs 3 of a, b, c, d: with c and d down, nothing commits.
    h.crash('c');
    h.crash('d');
    const commit = h.raw('a').log().committed;
    h.propose('a', 'blocked');
    expect(h.raw('a').log().committed).toBe(commit);
    h.start('c');
    h.tickAll(3);
    expect(h.raw('a').log().committed).toBeGreaterThan(commit);
    h.proposeConfChange('a', { changes: [] });
    h.tickAll(2);
    expect(h.raw('a').confState()).toEqual({ voters: ['a', 'b'], learners: [] });
  });

  it('removing the leader: it steps down once the change is applied and a remaining voter takes over', () => {
    const h = new Harness(['a', 'b', 'c']);
    h.elect('a');
    h.propose('a', 'v1');
    h.proposeConfChange('a', { changes: [{ type: 'removeNode', node: 'a' }] });
    h.tickAll(3);
    expect(h.raw('a').role).not.toBe('leader');
    const l = h.leader();
    expect(l === 'b' || l === 'c').toBe(true);
    h.propose(l!, 'v2');
    expect(h.node(l === 'b' ? 'c' : 'b').applied).toEqual(['v1', 'v2']);
  });
  it('a removed leader whose log is ahead still finishes the hand-over after losing leadership', () => {
    // Voters {a, b} move to {b, c} through a joint configuration; its outgoing half {a, b} needs
    // a's vote. a commits the change but nobody hears the commit index, a has one more entry than
    // the others, and a restarts as a follower. b and c cannot win without a's vote, and a refuses
    // it (its log is ahead); a must take the lead itself to spread the commit, then hand over.
    const h = new Harness(['a', 'b', 'c'], { maxSizePerMsg: 1, preVote: true }, ['a', 'b'], ['c']);
    h.elect('a');
    h.proposeConfChange('a', { transition: 'explicit', changes: [{ type: 'addNode', node: 'c' }, { type: 'removeNode', node: 'a' }] });
    h.tickAll(2);
    expect(h.raw('b').confState().votersOutgoing).toEqual(['a', 'b']);
    const a = h.raw('a');
    const leaveIndex = a.log().lastIndex() + 1;
    const x = new TextEncoder().encode('x');
    h.filter = (m) =>
      !(m.from === 'a' && (m.type === 'MsgTimeoutNow' || m.commit >= leaveIndex || m.entries.some((e) => e.data.byteLength === 1)));
    a.proposeConfChange({ changes: [] });
    a.propose(x);
    h.stabilize();
    expect(a.confState()).toEqual({ voters: ['b', 'c'], learners: [] }); // a applied its removal
    expect(h.raw('b').confState().votersOutgoing).toEqual(['a', 'b']); // the others did not
    h.crash('a');
    h.start('a');
    h.filter = undefined;
    h.tickAll(100);
    const l = h.leader();
    expect(l === 'b' || l === 'c').toBe(true);
    for (const id of ['b', 'c']) {
      expect(h.raw(id).confState()).toEqual({ voters: ['b', 'c'], learners: [] });
      expect(h.node(id).applied).toContain('x');
    }
  });
});

describe('leader transfer', () => {
  it('hands leadership to a caught-up follower with MsgTimeoutNow', () => {
    const h = new Harness(['a', 'b', 'c'], { checkQuorum: true, preVote: true });
    h.elect('a');
    h.propose('a', 'v1');
    h.raw('a').transferLeadership('c');
    h.stabilize();
    expect(types(h.delivered)).toContain('MsgTimeoutNow');
    expect(h.leader()).toBe('c');
    h.propose('c', 'v2');
    expect(h.node('a').applied).toEqual(['v1', 'v2']);
  });

  it('waits for a lagging target to catch up, refusing proposals meanwhile', () => {
    const h = new Harness(['a', 'b', 'c']);
    h.elect('a');
    h.crash('c');
    for (let i = 0; i < 5; i++) h.propose('a', `v${i}`);
    h.start('c');
    h.cutLink('a', 'c');
    h.raw('a').transferLeadership('c');
    h.stabilize();
    expect(h.raw('a').role).toBe('leader');
    expect(() => h.raw('a').propose(new Uint8Array([1]))).toThrow(/moving to c/);
    h.heal();
    h.tickAll(2);
    expect(h.leader()).toBe('c');
  });

  it('gives up after an election timeout if the target never catches up', () => {
    const h = new Harness(['a', 'b', 'c']);
    h.elect('a');
    h.crash('c');
    h.raw('a').transferLeadership('c');
    expect(h.raw('a').status().leadTransferee).toBe('c');
    h.tick('a', 11);
    expect(h.raw('a').status().leadTransferee).toBeNull();
    h.propose('a', 'accepted-again');
    expect(h.node('b').applied).toContain('accepted-again');
  });
});

describe('ReadIndex', () => {
  it('the leader answers only after a heartbeat round confirms it still leads', () => {
    const h = new Harness(['a', 'b', 'c']);
    h.elect('a');
    h.propose('a', 'v1');
    h.cutLink('b', 'a');
    h.cutLink('c', 'a');
    h.raw('a').readIndex('r1');
    h.stabilize();
    expect(h.node('a').readStates).toEqual([]); // no acks, no answer
    h.heal();
    h.raw('a').readIndex('r2');
    h.stabilize();
    const commit = h.raw('a').log().committed;
    expect(h.node('a').readStates).toEqual([
      { index: commit, ctx: 'r1' },
      { index: commit, ctx: 'r2' },
    ]);
  });

  it('a follower forwards the request and gets the leader’s commit index back', () => {
    const h = new Harness(['a', 'b', 'c']);
    h.elect('a');
    h.propose('a', 'v1');
    h.raw('b').readIndex('from-b');
    h.stabilize();
    expect(h.node('b').readStates).toEqual([{ index: h.raw('a').log().committed, ctx: 'from-b' }]);
    expect(types(h.delivered)).toContain('MsgReadIndexResp');
  });

  it('a new leader waits until it has committed an entry of its term', () => {
    const h = new Harness(['a', 'b', 'c']);
    h.elect('a');
    h.propose('a', 'v1');
    h.filter = (m) => !(m.type === 'MsgApp' && m.from === 'b');
    h.raw('b').campaign();
    h.stabilize();
    expect(h.raw('b').role).toBe('leader');
    h.raw('b').readIndex('early');
    h.stabilize();
    expect(h.node('b').readStates).toEqual([]);
    h.filter = undefined;
    h.tickAll(2);
    expect(h.node('b').readStates.map((r) => r.ctx)).toEqual(['early']);
    expect(h.node('b').readStates[0]!.index).toBe(h.raw('b').log().committed);
  });

  it('throws when no leader is known', () => {
    const h = new Harness(['a', 'b', 'c']);
    expect(() => h.raw('a').readIndex('x')).toThrow(RaftError);
  });
});
