import { describe, expect, it } from 'vitest';
import { encodeCommand, placementCommand, DesiredStateStore, type Command, type NodeRecord } from '../state/index.js';
import { Liveness, schedulingView, type Heartbeat } from './liveness.js';

// Liveness with an injected clock, and what the leader's scheduler does with it: a NotReady node
// keeps its VMs until it has been silent for --node-timeout plus --fence-after (by then it has
// fenced itself: cluster/fencing.ts), and only then do they go elsewhere.

const TIMEOUT = 10_000; // --node-timeout
const FENCE = 20_000; // --fence-after
const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();

function clock() {
  const c = { now: T0, beats: [] as Heartbeat[] };
  const l = new Liveness({ self: 'me', nodeTimeoutMs: TIMEOUT, fenceAfterMs: FENCE, now: () => c.now, heartbeats: () => c.beats });
  return { c, l };
}

describe('Liveness', () => {
  it('this node is always ready and never lost', () => {
    const { l } = clock();
    expect(l.ready('me')).toBe(true);
    expect(l.lost('me')).toBe(false);
  });

  // [name, heartbeat time carried (ms from T0), ms after T0 it was first seen, ms after T0 asked, ready, lost]
  const cases: [string, number, number, number, boolean, boolean][] = [
    ['a fresh heartbeat: ready', 0, 0, 1_000, true, false],
    ['silent for --node-timeout: NotReady, not lost', 0, 0, TIMEOUT + 1, false, false],
    ['silent for --node-timeout plus --fence-after: lost', 0, 0, TIMEOUT + FENCE + 1, false, true],
    ['just short of that: not lost yet', 0, 0, TIMEOUT + FENCE, false, false],
    ['first seen with an old time: counts from the time it carries', -TIMEOUT, 0, 1, false, false],
    ['a clock running ahead counts from now, not from its own time', 60_000, 0, TIMEOUT + 1, false, false],
  ];
  for (const [name, carried, seenAt, askedAt, ready, lost] of cases) {
    it(name, () => {
      const { c, l } = clock();
      c.now = T0 + seenAt;
      c.beats = [{ nodeId: 'b', time: iso(T0 + carried) }];
      l.refresh();
      c.now = T0 + askedAt;
      expect({ ready: l.ready('b'), lost: l.lost('b') }).toEqual({ ready, lost });
    });
  }

  it('a heartbeat that changes is timed by this node when it sees the change', () => {
    const { c, l } = clock();
    c.beats = [{ nodeId: 'b', time: iso(T0) }];
    l.refresh();
    c.now = T0 + TIMEOUT - 1;
    c.beats = [{ nodeId: 'b', time: iso(T0 + 1) }]; // written 1 ms after the last, seen late
    c.now = T0 + TIMEOUT + 5_000;
    expect(l.ready('b')).toBe(true);
  });

  it('a node that never heartbeat is ready while it answers pings', () => {
    const { l } = clock();
    expect(l.ready('b', true)).toBe(true);
    expect(l.ready('b', false)).toBe(false);
    expect(l.lost('b')).toBe(false);
  });

  it('a new leader gives every node --node-timeout plus --fence-after from its election, whatever old heartbeats say', () => {
    const { c, l } = clock();
    c.beats = [{ nodeId: 'b', time: iso(T0) }];
    l.refresh();
    c.now = T0 + 60_000;
    expect(l.lost('b')).toBe(true);
    l.leading(true);
    expect(l.lost('b')).toBe(false);
    c.now += TIMEOUT + FENCE + 1;
    expect(l.lost('b')).toBe(true);
  });
});

const T = iso(T0);
const node = (id: string): NodeRecord => ({ nodeId: id, name: id, role: 'voter', api: null, addresses: [], labels: {}, capacity: { vcpus: 4, memoryMiB: 4096 }, formats: ['executable'], registeredAt: T, updatedAt: T });

describe('rescheduling a dead node\'s VMs (the leader\'s duty)', () => {
  it('moves the VMs of a silent node only after --node-timeout plus --fence-after', () => {
    const s = new DesiredStateStore();
    let index = 0;
    const feed = (cmd: Command) => s.apply(encodeCommand(cmd), ++index);
    feed({ op: 'registerNode', time: T, node: node('me') });
    feed({ op: 'registerNode', time: T, node: node('b') });
    feed({ op: 'apply', time: T, planId: 'p', applyset: 'd', changes: [{ kind: 'Image', name: 'exe', action: 'create', read: 0, labels: {}, spec: { blob: `blake3:${'a'.repeat(64)}`, format: 'executable' } }, { kind: 'VirtualMachine', name: 'web', action: 'create', read: 0, labels: {}, spec: { image: 'exe', placement: { nodeSelector: {} } } }] });

    const { c, l } = clock();
    l.leading(true);
    c.beats = [{ nodeId: 'b', time: iso(T0) }];
    // Only b may take it at first (this node is cordoned for the test's sake, so the VM lands on b).
    feed({ op: 'cordon', time: T, nodeId: 'me', cordoned: true });
    const view = schedulingView(l, () => false, () => false);
    const first = placementCommand(s, view, T)!;
    expect(first.place).toEqual([expect.objectContaining({ vm: 'web', nodeId: 'b' })]);
    feed(first);
    feed({ op: 'cordon', time: T, nodeId: 'me', cordoned: false });

    // [ms after b's last heartbeat, where web is placed after the scheduler's pass]
    const timeline: [number, string][] = [
      [1_000, 'b'],
      [TIMEOUT + 1, 'b'], // NotReady: no new VMs there, but what runs there stays
      [TIMEOUT + FENCE, 'b'], // b may still be running it: it fences itself only now
      [TIMEOUT + FENCE + 1, 'me'], // lost: b has stopped it by now; it runs elsewhere
    ];
    for (const [after, where] of timeline) {
      c.now = T0 + after;
      const cmd = placementCommand(s, view, iso(c.now));
      if (cmd) feed(cmd);
      expect({ after, node: s.placement('web')?.nodeId }).toEqual({ after, node: where });
      expect(l.ready('b')).toBe(after < TIMEOUT);
    }
  });
});
