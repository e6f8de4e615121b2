import { describe, expect, it } from 'vitest';
import { schedule, type SchedNode, type SchedVm } from './scheduler.js';

// Table tests of placement: capacity, formats, selectors, spreading, and the reasons given.

const node = (name: string, o: Partial<SchedNode> = {}): SchedNode => ({
  nodeId: `id-${name}`,
  name,
  schedulable: true,
  formats: ['executable', 'kernel', 'raw', 'qcow2'],
  labels: {},
  capacity: { vcpus: 4, memoryMiB: 4096 },
  ...o,
});
const vm = (name: string, o: Partial<SchedVm> = {}): SchedVm => ({ name, vcpus: 1, memoryMiB: 256, format: 'kernel', labels: {}, nodeId: null, ...o });

describe('schedule', () => {
  const cases: { name: string; nodes: SchedNode[]; vms: SchedVm[]; place: string[]; unschedulable?: string[]; evict?: string[] }[] = [
    { name: 'one node takes everything that fits', nodes: [node('a')], vms: [vm('v1'), vm('v2')], place: ['v1->a', 'v2->a'] },
    {
      name: 'capacity: a full node is skipped',
      nodes: [node('a', { capacity: { vcpus: 1, memoryMiB: 4096 } }), node('b')],
      vms: [vm('v1'), vm('v2')],
      place: ['v1->b', 'v2->a'], // b has more free memory first; then a's memory wins over b's
    },
    {
      name: 'format: only nodes whose drivers run the image',
      nodes: [node('a', { formats: ['executable'] }), node('b', { formats: ['kernel'] })],
      vms: [vm('v1', { format: 'kernel' }), vm('v2', { format: 'executable' })],
      place: ['v1->b', 'v2->a'],
    },
    {
      name: 'nodeSelector is hard',
      nodes: [node('a', { labels: { zone: 'a' } }), node('b', { labels: { zone: 'b' } })],
      vms: [vm('v1', { nodeSelector: { zone: 'b' } })],
      place: ['v1->b'],
    },
    {
      name: 'spreadBy prefers nodes without the same value, co-locates when it must',
      nodes: [node('a'), node('b', { capacity: { vcpus: 4, memoryMiB: 8192 } })],
      vms: ['w1', 'w2', 'w3'].map((n) => vm(n, { labels: { app: 'web' }, spreadBy: 'app' })),
      place: ['w1->b', 'w2->a', 'w3->b'],
    },
    {
      name: 'spread counts VMs already placed',
      nodes: [node('a'), node('b', { capacity: { vcpus: 4, memoryMiB: 8192 } })],
      vms: [vm('w0', { labels: { app: 'web' }, spreadBy: 'app', nodeId: 'id-b' }), vm('w1', { labels: { app: 'web' }, spreadBy: 'app' })],
      place: ['w1->a'],
    },
    {
      name: 'not ready or cordoned nodes take nothing new, and keep what they have',
      nodes: [node('a', { schedulable: false }), node('b')],
      vms: [vm('v0', { nodeId: 'id-a' }), vm('v1')],
      place: ['v1->b'],
    },
    {
      name: 'a VM whose node is gone is placed again',
      nodes: [node('b')],
      vms: [vm('v1', { nodeId: 'id-gone' })],
      place: ['v1->b'],
      evict: ['v1'],
    },
    {
      name: 'a VM whose selector no longer matches its node moves',
      nodes: [node('a', { labels: { zone: 'a' } }), node('b', { labels: { zone: 'b' } })],
      vms: [vm('v1', { nodeId: 'id-a', nodeSelector: { zone: 'b' } })],
      place: ['v1->b'],
      evict: ['v1'],
    },
    {
      name: 'nothing fits: the reason names what was missing',
      nodes: [node('a', { formats: ['executable'] }), node('b', { labels: { zone: 'x' }, formats: ['kernel'] }), node('c', { capacity: { vcpus: 1, memoryMiB: 128 } }), node('d', { schedulable: false })],
      vms: [vm('v1', { nodeSelector: { zone: 'x' }, memoryMiB: 512 }), vm('v2', { format: 'qcow2', memoryMiB: 512 })],
      place: ['v1->b'],
      unschedulable: ['v2: 0/4 nodes fit: 1 not ready or cordoned; 2 cannot run format qcow2; 1 lack 512 MiB free memory'],
    },
    {
      name: 'nothing matches the selector: the reason names it',
      nodes: [node('a', { labels: { zone: 'a' } }), node('b', { labels: { zone: 'b' } })],
      vms: [vm('v1', { nodeSelector: { zone: 'c', disk: 'ssd' } })],
      place: [],
      unschedulable: ['v1: 0/2 nodes fit: 2 do not match nodeSelector zone=c,disk=ssd'],
    },
    {
      name: 'not enough vcpus anywhere: the reason names them (memory alone would fit)',
      nodes: [node('a', { capacity: { vcpus: 2, memoryMiB: 8192 } }), node('b', { capacity: { vcpus: 4, memoryMiB: 8192 } })],
      vms: [vm('big', { vcpus: 6 })],
      place: [],
      unschedulable: ['big: 0/2 nodes fit: 2 lack 6 free vcpus'],
    },
    {
      name: 'vcpus used by earlier placements count: the last VM waits, and says why',
      nodes: [node('a', { capacity: { vcpus: 2, memoryMiB: 8192 } })],
      vms: [vm('v1', { vcpus: 2 }), vm('v2')],
      place: ['v1->a'],
      unschedulable: ['v2: 0/1 nodes fit: 1 lack 1 free vcpus'],
    },
    { name: 'an empty cluster', nodes: [], vms: [vm('v1')], place: [], unschedulable: ['v1: no nodes in the cluster'] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const r = schedule(c.nodes, c.vms);
      expect(r.place.map((p) => `${p.vm}->${p.nodeId.slice(3)}`)).toEqual(c.place);
      expect(r.unschedulable.map((u) => `${u.vm}: ${u.reason}`)).toEqual(c.unschedulable ?? []);
      expect(r.evict).toEqual(c.evict ?? []);
    });
  }

  it('is deterministic and never overcommits what it places', () => {
    const nodes = [node('a'), node('b'), node('c', { capacity: { vcpus: 2, memoryMiB: 1024 } })];
    const vms = Array.from({ length: 40 }, (_, i) => vm(`v${String(i).padStart(2, '0')}`, { memoryMiB: 200 + (i % 5) * 100, labels: { app: `a${i % 3}` }, spreadBy: 'app' }));
    const r1 = schedule(nodes, vms);
    const r2 = schedule([...nodes], [...vms].reverse());
    expect(r2.place).toEqual(r1.place);
    for (const n of nodes) {
      const a = r1.allocated.get(n.nodeId)!;
      expect(a.vcpus).toBeLessThanOrEqual(n.capacity.vcpus);
      expect(a.memoryMiB).toBeLessThanOrEqual(n.capacity.memoryMiB);
    }
    expect(r1.place.length + r1.unschedulable.length).toBe(40);
  });
});
