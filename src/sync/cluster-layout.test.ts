import { describe, expect, it } from 'vitest';
import { DesiredStateStore, type Command, type NodeRecord } from '../state/index.js';
import { clusterDocChanges, clusterDocEntries } from './cluster-layout.js';

// The leader publishes only what the store says changed since its last pass. Whatever the
// commands, a document kept up to date that way must say exactly what a full pass would.

const T = '2026-01-01T00:00:00.000Z';
const node = (id: string, extra: Partial<NodeRecord> = {}): NodeRecord => ({
  nodeId: id,
  name: `n-${id}`,
  role: 'voter',
  api: null,
  addresses: [],
  labels: {},
  capacity: { vcpus: 4, memoryMiB: 4096 },
  formats: ['raw'],
  registeredAt: T,
  updatedAt: T,
  ...extra,
});

function seeded(seed: number): () => number {
  let s = seed;
  return () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
}

/** A random but valid-looking command against the store as it is now. */
function randomCommand(store: DesiredStateStore, rand: () => number, i: number): Command {
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const names = ['a', 'b', 'c', 'd', 'e'];
  const r = rand();
  if (r < 0.45) {
    const changes = names.filter(() => rand() < 0.4).map((n) => {
      const cur = store.get('VirtualMachine', n);
      return { kind: 'VirtualMachine' as const, name: n, action: cur ? ('configure' as const) : ('create' as const), read: cur?.metadata.resourceVersion ?? 0, labels: { v: String(Math.floor(rand() * 3)) }, spec: { image: 'base', vcpus: 1 + Math.floor(rand() * 2) } };
    });
    const base = store.get('Image', 'base');
    return { op: 'apply', time: T, planId: `p${i}`, applyset: 'default', changes: [{ kind: 'Image', name: 'base', action: base ? 'unchanged' : 'create', read: base?.metadata.resourceVersion ?? 0, labels: {}, spec: { blob: `blake3:${'a'.repeat(64)}`, format: 'raw' } }, ...changes] };
  }
  if (r < 0.6) return { op: 'delete', time: T, targets: names.filter(() => rand() < 0.3).map((name) => ({ kind: 'VirtualMachine' as const, name })) };
  const vms = store.list('VirtualMachine');
  if (r < 0.85 && vms.length > 0) {
    const v = pick(vms);
    const ref = { vm: v.metadata.name, uid: rand() < 0.9 ? v.metadata.uid : 'stale-uid' };
    const what = rand();
    if (what < 0.5) return { op: 'place', time: T, place: [{ ...ref, nodeId: pick(['n1', 'n2']) }], evict: [], unschedulable: [] };
    if (what < 0.7) return { op: 'place', time: T, place: [], evict: [ref], unschedulable: [] };
    if (what < 0.85) return { op: 'place', time: T, place: [], evict: [], unschedulable: [{ ...ref, reason: 'no room' }] };
    return { op: 'place', time: T, place: [], evict: [], unschedulable: [], release: [ref] };
  }
  if (r < 0.93) return { op: 'registerNode', time: T, node: node(pick(['n1', 'n2']), { updatedAt: `2026-01-01T00:00:0${i % 10}.000Z` }) };
  return { op: 'cordon', time: T, nodeId: pick(['n1', 'n2']), cordoned: rand() < 0.5, drain: rand() < 0.5 };
}

describe('publishing only what changed', () => {
  it('keeps a document equal to a full pass, over random commands (and after a restore)', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const rand = seeded(seed);
      const store = new DesiredStateStore();
      store.applyCommand({ op: 'bootstrap', time: T, clusterId: 'c1', node: node('n1') }, 1);
      store.applyCommand({ op: 'registerNode', time: T, node: node('n2') }, 2);
      const doc = new Map<string, unknown>();
      const sync = () => {
        const changes = store.takeChanges();
        if (changes === 'all') {
          doc.clear();
          for (const [k, v] of clusterDocEntries(store)) doc.set(k, v);
          return;
        }
        for (const [k, v] of clusterDocChanges(store, changes)) {
          if (v === undefined) doc.delete(k);
          else doc.set(k, v);
        }
      };
      sync();
      for (let i = 3; i < 200; i++) {
        store.applyCommand(randomCommand(store, rand, i), i);
        if (rand() < 0.7) sync(); // passes coalesce: several commands between two of them
        if (i === 100) {
          const copy = new DesiredStateStore();
          copy.restore(store.snapshot(), i);
          expect(copy.takeChanges()).toBe('all');
        }
      }
      sync();
      expect(Object.fromEntries(doc), `seed ${seed}`).toEqual(Object.fromEntries(clusterDocEntries(store)));
    }
  });

  it('names exactly the keys a command touched, and everything only the first time and after a restore', () => {
    const store = new DesiredStateStore();
    expect(store.takeChanges()).toBe('all');
    expect(store.takeChanges()).toEqual({ resources: new Set(), placements: new Set(), nodes: new Set() });
    store.applyCommand({ op: 'apply', time: T, planId: 'p1', applyset: 'default', changes: [{ kind: 'Image', name: 'base', action: 'create', read: 0, labels: {}, spec: { blob: `blake3:${'a'.repeat(64)}`, format: 'raw' } }] }, 1);
    store.applyCommand({ op: 'registerNode', time: T, node: node('n1') }, 2);
    expect(store.takeChanges()).toEqual({ resources: new Set(['Image/base']), placements: new Set(), nodes: new Set(['n1']) });
    store.restore(store.snapshot(), 2);
    expect(store.takeChanges()).toBe('all');
  });
});
