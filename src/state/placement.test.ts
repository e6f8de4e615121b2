import { describe, expect, it } from 'vitest';
import { encodeCommand, type Command, type NodeRecord } from './commands.js';
import { placementCommand } from './placement.js';
import { DesiredStateStore } from './store.js';

// The leader's scheduling pass over the store: it converges (a second pass proposes nothing),
// follows deletes and recreations, and keeps reasons for VMs that fit nowhere.

const T = '2026-01-01T00:00:00.000Z';
const nodeRec = (name: string, formats: string[], memoryMiB = 1024): NodeRecord => ({
  nodeId: `id-${name}`,
  name,
  role: 'voter',
  api: null,
  addresses: [],
  labels: {},
  capacity: { vcpus: 2, memoryMiB },
  formats,
  registeredAt: T,
  updatedAt: T,
});
const all = { schedulable: () => true };

function setup() {
  const s = new DesiredStateStore();
  let index = 0;
  const feed = (c: Command) => s.apply(encodeCommand(c), ++index);
  feed({ op: 'registerNode', time: T, node: nodeRec('a', ['executable']) });
  feed({ op: 'registerNode', time: T, node: nodeRec('b', ['executable', 'kernel']) });
  feed({
    op: 'apply',
    time: T,
    planId: 'p1',
    applyset: 'd',
    changes: [
      { kind: 'Image', name: 'exe', action: 'create', read: 0, labels: {}, spec: { blob: `blake3:${'a'.repeat(64)}`, format: 'executable' } },
      { kind: 'Image', name: 'disk', action: 'create', read: 0, labels: {}, spec: { blob: `blake3:${'b'.repeat(64)}`, format: 'qcow2' } },
      { kind: 'VirtualMachine', name: 'v1', action: 'create', read: 0, labels: {}, spec: { image: 'exe' } },
      { kind: 'VirtualMachine', name: 'v2', action: 'create', read: 0, labels: {}, spec: { image: 'disk' } },
    ],
  });
  return { s, feed };
}

describe('placementCommand', () => {
  it('places what fits, records why the rest does not, and then has nothing more to say', () => {
    const { s, feed } = setup();
    const cmd = placementCommand(s, all, T)!;
    expect(cmd).toMatchObject({ op: 'place', place: [{ vm: 'v1', nodeId: 'id-a' }], unschedulable: [{ vm: 'v2', reason: '0/2 nodes fit: 2 cannot run format qcow2' }] });
    feed(cmd);
    expect(s.placement('v1')?.nodeId).toBe('id-a');
    expect(s.placement('v2')).toMatchObject({ nodeId: null, reason: expect.stringContaining('qcow2') });
    expect(placementCommand(s, all, T)).toBeNull();
  });

  it('drops a placement with its VM, and a recreated VM of the same name is placed afresh', () => {
    const { s, feed } = setup();
    const first = placementCommand(s, all, T)!;
    feed({ op: 'delete', time: T, targets: [{ kind: 'VirtualMachine', name: 'v1' }] });
    feed(first); // a decision for the deleted VM arrives late: it must not stick
    expect(s.placement('v1')).toBeUndefined();
    feed({ op: 'apply', time: T, planId: 'p2', applyset: 'd', changes: [{ kind: 'VirtualMachine', name: 'v1', action: 'create', read: 0, labels: {}, spec: { image: 'exe' } }] });
    expect(s.placement('v1')).toBeUndefined();
    expect(placementCommand(s, all, T)).toMatchObject({ place: [{ vm: 'v1' }] });
  });

  it('does not move running VMs off a node that becomes unschedulable', () => {
    const { s, feed } = setup();
    feed(placementCommand(s, all, T)!);
    const again = placementCommand(s, { schedulable: (id) => id !== 'id-a' }, T);
    // Only v2's reason changes (one node fewer to consider); v1 stays where it runs.
    expect(again).toMatchObject({ place: [], evict: [], unschedulable: [{ vm: 'v2' }] });
  });
});

describe('moving VMs without ever running one twice', () => {
  it('evicts a VM from a live node that no longer fits, and places it elsewhere only once that node let it go', () => {
    const { s, feed } = setup();
    feed(placementCommand(s, all, T)!); // v1 on a
    // v1 now must run where the kernel format is offered... simulate by cordon+drain of a.
    feed({ op: 'cordon', time: T, nodeId: 'id-a', cordoned: true, drain: true });
    expect(s.placement('v1')).toMatchObject({ nodeId: 'id-a', evicting: true });
    // a still runs it: v1 does not move yet (only v2's reason changes: one node fewer fits).
    const waiting = placementCommand(s, { ...all, vmGone: () => false }, T);
    expect(waiting?.place ?? []).toEqual([]);
    expect(waiting?.release ?? []).toEqual([]);
    // a reports it gone: released and placed on b in one entry.
    const cmd = placementCommand(s, { ...all, vmGone: (n, vm) => n === 'id-a' && vm === 'v1' }, T)!;
    expect(cmd).toMatchObject({ release: [{ vm: 'v1' }], place: [{ vm: 'v1', nodeId: 'id-b' }] });
    feed(cmd);
    expect(s.placement('v1')).toMatchObject({ nodeId: 'id-b' });
    expect(s.placement('v1')?.evicting).toBeUndefined();
  });

  it('moves the VMs of a lost node at once (it fenced itself), and never places on a cordoned node', () => {
    const { s, feed } = setup();
    feed(placementCommand(s, all, T)!); // v1 on a
    feed({ op: 'cordon', time: T, nodeId: 'id-b', cordoned: true });
    const none = placementCommand(s, { schedulable: () => true, lost: (id) => id === 'id-a' }, T)!;
    // a is lost and b is cordoned: v1 has nowhere to go, and says so.
    expect(none.place).toEqual([]);
    expect(none.unschedulable.map((u) => u.vm)).toContain('v1');
    feed({ op: 'cordon', time: T, nodeId: 'id-b', cordoned: false });
    const moved = placementCommand(s, { schedulable: () => true, lost: (id) => id === 'id-a' }, T)!;
    expect(moved.place).toEqual([expect.objectContaining({ vm: 'v1', nodeId: 'id-b' })]);
  });
});
