import { describe, expect, it } from 'vitest';
import { encodeCommand, DesiredStateStore, type Command, type NodeRecord } from '../state/index.js';
import { desiredVoters, leadershipTarget, membershipStep, nextConfChange, type MembershipStep, type ProgressView } from './voters.js';

// Peer manifests as Raft membership: which voters the cluster wants (pure, from the store), and
// the one change the leader proposes next, or whom it hands leadership to.

const T = '2026-01-01T00:00:00.000Z';
const rec = (id: string, role: 'voter' | 'worker' = 'voter'): NodeRecord => ({ nodeId: id, name: id, role, api: null, addresses: [], labels: {}, capacity: { vcpus: 1, memoryMiB: 1 }, formats: [], registeredAt: T, updatedAt: T });
const peer = (name: string, nodeId: string, role: 'voter' | 'worker') => ({ kind: 'Peer' as const, name, action: 'create' as const, read: 0, labels: {}, spec: { nodeId, role } });

function store() {
  const s = new DesiredStateStore();
  let i = 0;
  const feed = (c: Command) => s.apply(encodeCommand(c), ++i);
  feed({ op: 'bootstrap', clusterId: 'c1', node: rec('a') } as Command);
  return { s, feed };
}

const caughtUp = (ids: string[], commit = 100): ProgressView => ({ progress: (id) => (ids.includes(id) ? { match: commit, recentActive: true } : { match: 0, recentActive: false }), commit });

describe('desiredVoters', () => {
  it('follows the Peers: applying a voter Peer wants it, pruning it (or making it a worker) does not', () => {
    const { s, feed } = store();
    expect([...desiredVoters(s)]).toEqual(['a']);
    feed({ op: 'apply', time: T, planId: 'p1', applyset: 'peers', changes: [peer('b', 'b', 'voter'), peer('w', 'w', 'worker')] });
    expect([...desiredVoters(s)].sort()).toEqual(['a', 'b']);
    feed({ op: 'registerNode', time: T, node: rec('b') });
    feed({ op: 'apply', time: T, planId: 'p2', applyset: 'peers', changes: [{ ...peer('b', 'b', 'worker'), action: 'configure', read: 2 }] });
    expect([...desiredVoters(s)]).toEqual(['a']);
    expect(s.node('b')?.role).toBe('worker');
    feed({ op: 'delete', time: T, targets: [{ kind: 'Peer', name: 'b' }] });
    expect(s.node('b')).toBeUndefined();
    expect(s.admitted('b')).toBe(false);
    // A node whose Peer went cannot come back by registering itself.
    const out = s.apply(encodeCommand({ op: 'registerNode', time: T, node: rec('b') }), 99) as { ok: boolean };
    expect(out.ok).toBe(false);
    expect(s.node('b')).toBeUndefined();
  });
});

describe('nextConfChange', () => {
  const conf = (voters: string[], learners: string[] = []) => ({ voters, learners });
  it('adds a wanted node as a learner, promotes it once caught up, then removes an unwanted voter', () => {
    const want = new Set(['a', 'b']);
    expect(nextConfChange(conf(['a', 'c']), want, 'a', caughtUp([]))).toEqual({ changes: [{ type: 'addLearner', node: 'b' }] });
    expect(nextConfChange(conf(['a', 'c'], ['b']), want, 'a', caughtUp([]))).toEqual({ changes: [{ type: 'removeNode', node: 'c' }] });
    expect(nextConfChange(conf(['a', 'c'], ['b']), want, 'a', caughtUp(['b']))).toEqual({ changes: [{ type: 'addNode', node: 'b' }] });
    expect(nextConfChange(conf(['a', 'b']), want, 'a', caughtUp(['b']))).toBeNull();
  });

  it('never removes the leader itself, and nothing happens during a joint configuration', () => {
    expect(nextConfChange(conf(['a', 'b']), new Set(['b']), 'a', caughtUp(['b']))).toBeNull();
    expect(nextConfChange({ voters: ['a', 'b'], learners: [], votersOutgoing: ['a'] }, new Set(['a']), 'a', caughtUp([]))).toBeNull();
  });
});

describe('leadershipTarget', () => {
  it('a leader that is no longer wanted hands over to a wanted voter that is caught up', () => {
    expect(leadershipTarget({ voters: ['a', 'b', 'c'], learners: [] }, new Set(['a', 'b', 'c']), 'a', caughtUp(['b', 'c']))).toBeNull();
    expect(leadershipTarget({ voters: ['a', 'b', 'c'], learners: [] }, new Set(['b', 'c']), 'a', caughtUp(['c']))).toBe('c');
    expect(leadershipTarget({ voters: ['a', 'b'], learners: [] }, new Set(['b']), 'a', caughtUp([]))).toBeNull(); // nobody caught up yet: wait
  });
});

describe('membershipStep (the leader\'s duty, one step per pass)', () => {
  // [situation, voters, learners, wanted, caught up, the step]
  const cases: [string, string[], string[], string[], string[], MembershipStep][] = [
    ['in step: nothing to do', ['a', 'b', 'c'], [], ['a', 'b', 'c'], ['b', 'c'], null],
    ['a Peer for a new voter: it comes in as a learner', ['a'], [], ['a', 'b'], [], { kind: 'change', cc: { changes: [{ type: 'addLearner', node: 'b' }] } }],
    ['the learner is not caught up yet: wait', ['a'], ['b'], ['a', 'b'], [], null],
    ['the learner caught up: promoted', ['a'], ['b'], ['a', 'b'], ['b'], { kind: 'change', cc: { changes: [{ type: 'addNode', node: 'b' }] } }],
    ['a voter pruned: removed', ['a', 'b', 'c'], [], ['a', 'b'], ['b', 'c'], { kind: 'change', cc: { changes: [{ type: 'removeNode', node: 'c' }] } }],
    ['this leader pruned: hands leadership to a caught-up voter first', ['a', 'b', 'c'], [], ['b', 'c'], ['c'], { kind: 'transfer', to: 'c' }],
    ['this leader pruned, nobody caught up: waits (never removes itself)', ['a', 'b'], [], ['b'], [], null],
  ];
  for (const [name, voters, learners, want, upToDate, step] of cases) {
    it(name, () => expect(membershipStep({ voters, learners }, new Set(want), 'a', caughtUp(upToDate))).toEqual(step));
  }
});
