import { describe, expect, it } from 'vitest';
import { encodeCommand, type ApplyChange, type Command } from './commands.js';
import { DesiredStateStore, PLAN_MEMORY, REQUEST_MEMORY, REQUEST_MEMORY_MAX, REQUEST_MEMORY_MS, uidFor } from './store.js';

// The store is the Raft state machine: deterministic, all-or-nothing per entry, and equal on
// every replica that applies the same entries.

const T = '2026-01-01T00:00:00.000Z';
const img = (name: string, read = 0): ApplyChange => ({ kind: 'Image', name, action: read ? 'configure' : 'create', read, labels: {}, spec: { blob: `blake3:${'a'.repeat(64)}`, format: 'raw' } });
const vm = (name: string, read = 0, spec: Record<string, unknown> = {}): ApplyChange => ({ kind: 'VirtualMachine', name, action: read ? 'configure' : 'create', read, labels: {}, spec: { image: 'base', ...spec } });
const apply = (planId: string, changes: ApplyChange[], applyset = 'default'): Command => ({ op: 'apply', time: T, planId, applyset, changes });

function feed(store: DesiredStateStore, cmds: Command[], from = 1) {
  return cmds.map((c, i) => store.apply(encodeCommand(c), from + i));
}

describe('DesiredStateStore', () => {
  it('creates resources with uid, generation 1, resourceVersion = index, creation time from the entry', () => {
    const s = new DesiredStateStore();
    const [out] = feed(s, [apply('p1', [img('base'), vm('web')])], 7);
    expect(out).toMatchObject({ ok: true, index: 7, results: [{ action: 'created' }, { action: 'created' }] });
    const r = s.get('VirtualMachine', 'web')!;
    expect(r.metadata).toEqual({ name: 'web', labels: {}, uid: uidFor(null, 7, 'VirtualMachine/web'), generation: 1, resourceVersion: 7, creationTimestamp: T });
    expect(r.applyset).toBe('default');
  });

  it('rejects the whole entry when any read version changed (per-resource optimistic concurrency)', () => {
    const s = new DesiredStateStore();
    feed(s, [apply('p1', [img('base'), vm('a'), vm('b')])]);
    const snapshotBefore = Buffer.from(s.snapshot()).toString();
    const [out] = feed(s, [apply('p2', [vm('a', 1, { vcpus: 2 }), vm('b', 0, { vcpus: 2 })])], 2);
    expect(out).toMatchObject({ ok: false, code: 'conflict', conflicts: [{ kind: 'VirtualMachine', name: 'b', read: 0, current: 1 }] });
    expect(Buffer.from(s.snapshot()).toString()).toBe(snapshotBefore);
  });

  it('refuses a VM whose image does not exist after the entry, and an Image still in use', () => {
    const s = new DesiredStateStore();
    expect(feed(s, [apply('p1', [vm('orphan')])])[0]).toMatchObject({ ok: false, code: 'invalid' });
    expect(s.size).toBe(0);
    feed(s, [apply('p2', [img('base'), vm('web')])], 2);
    expect(feed(s, [{ op: 'delete', time: T, targets: [{ kind: 'Image', name: 'base' }] }], 3)[0]).toMatchObject({ ok: false, code: 'invalid' });
    expect(feed(s, [{ op: 'delete', time: T, targets: [{ kind: 'Image', name: 'base' }, { kind: 'VirtualMachine', name: 'web' }] }], 4)[0]).toMatchObject({ ok: true });
    expect(s.size).toBe(0);
  });

  it('applies a plan id at most once', () => {
    const s = new DesiredStateStore();
    feed(s, [apply('p1', [img('base')])]);
    expect(feed(s, [apply('p1', [img('base', 1)])], 2)[0]).toMatchObject({ ok: false, code: 'conflict', message: 'plan p1 was already applied' });
  });

  it('forgets the oldest plan ids past PLAN_MEMORY, identically on every replica', () => {
    const s = new DesiredStateStore();
    feed(s, [apply('p0', [img('base')])]);
    for (let i = 1; i <= PLAN_MEMORY; i++) s.applyCommand(apply(`p${i}`, [{ ...img('base', s.get('Image', 'base')!.metadata.resourceVersion), action: 'unchanged' }]), i + 1);
    expect(s.hasAppliedPlan('p0')).toBe(false);
    expect(s.hasAppliedPlan(`p${PLAN_MEMORY}`)).toBe(true);
  });

  it('moves ownership to the applyset that last applied a resource (prune then leaves it alone)', () => {
    const s = new DesiredStateStore();
    feed(s, [apply('p1', [img('base'), vm('shared')], 'a')]);
    expect(s.inventory('a').map((r) => r.metadata.name)).toEqual(['base', 'shared']);
    const rv = s.get('VirtualMachine', 'shared')!.metadata.resourceVersion;
    feed(s, [apply('p2', [{ ...vm('shared', rv), action: 'unchanged' }], 'b')], 2);
    expect(s.inventory('a').map((r) => r.metadata.name)).toEqual(['base']);
    expect(s.inventory('b').map((r) => r.metadata.name)).toEqual(['shared']);
  });

  it('restores from its snapshot to an equal state', () => {
    const s = new DesiredStateStore();
    feed(s, [
      { op: 'bootstrap', time: T, clusterId: 'c1', node: { nodeId: 'n'.repeat(64), name: 'n1', role: 'voter', api: null, addresses: [], labels: {}, capacity: { vcpus: 1, memoryMiB: 1 }, formats: [], registeredAt: T, updatedAt: T } },
      apply('p1', [img('base'), vm('a')]),
      { op: 'addJoinSecret', time: T, secretHash: 'h', role: 'worker', expiresAt: '2027-01-01T00:00:00.000Z' },
    ]);
    const copy = new DesiredStateStore();
    copy.restore(s.snapshot(), 3);
    expect(Buffer.from(copy.snapshot()).toString()).toBe(Buffer.from(s.snapshot()).toString());
    expect(copy.appliedIndex).toBe(3);
    expect(copy.clusterId).toBe('c1');
    expect(copy.activeJoinSecrets('2026-06-01T00:00:00.000Z')).toHaveLength(1);
  });

  it('is deterministic: two replicas fed the same entries hold byte-identical state', () => {
    const cmds: Command[] = [apply('p1', [img('base'), vm('a'), vm('b')]), apply('p2', [vm('a', 1, { memoryMiB: 512 })]), { op: 'delete', time: T, targets: [{ kind: 'VirtualMachine', name: 'b' }] }];
    const a = new DesiredStateStore();
    const b = new DesiredStateStore();
    feed(a, cmds);
    feed(b, cmds);
    expect(Buffer.from(a.snapshot()).equals(Buffer.from(b.snapshot()))).toBe(true);
    expect(a.get('VirtualMachine', 'a')!.metadata.generation).toBe(2);
  });

  it('applies a request id at most once: a retry gets the first outcome and changes nothing', () => {
    const s = new DesiredStateStore();
    const first = s.applyCommand({ ...apply('p1', [img('base'), vm('web')]), requestId: 'r1' }, 1);
    expect(first).toMatchObject({ ok: true, index: 1, results: [{ action: 'created' }, { action: 'created' }] });
    const before = Buffer.from(s.snapshot()).toString();
    // The retry was planned again after the first attempt had applied: same id, other plan.
    const retry = s.applyCommand({ ...apply('p2', [{ ...vm('web', 1, { vcpus: 2 }), action: 'configure' }]), requestId: 'r1' }, 2);
    expect(retry).toBe(first);
    expect(Buffer.from(s.snapshot()).toString()).toBe(before);
    expect(s.get('VirtualMachine', 'web')!.metadata.generation).toBe(1);
    // A failed first attempt is answered as failed again; another id is a new write.
    const bad = s.applyCommand({ op: 'delete', time: T, targets: [{ kind: 'Image', name: 'base' }], requestId: 'r2' }, 3);
    expect(bad).toMatchObject({ ok: false, code: 'invalid' });
    expect(s.applyCommand({ op: 'delete', time: T, targets: [{ kind: 'VirtualMachine', name: 'web' }], requestId: 'r2' }, 4)).toBe(bad);
    expect(s.get('VirtualMachine', 'web')).toBeDefined();
    expect(s.applyCommand({ op: 'delete', time: T, targets: [{ kind: 'VirtualMachine', name: 'web' }], requestId: 'r3' }, 5)).toMatchObject({ ok: true, index: 5 });
  });

  it('remembers request ids through a snapshot for REQUEST_MEMORY_MS of log time, however many writes come between, alike on every replica', () => {
    const s = new DesiredStateStore();
    const at = (ms: number) => new Date(Date.parse(T) + ms).toISOString();
    s.applyCommand({ ...apply('p0', [img('base')]), requestId: 'r0' }, 1);
    const copy = new DesiredStateStore();
    copy.restore(s.snapshot(), 1);
    expect(copy.applyCommand({ ...apply('px', [img('other')]), requestId: 'r0' }, 2)).toMatchObject({ ok: true, index: 1 });
    expect(copy.get('Image', 'other')).toBeUndefined();
    // Many more writes than REQUEST_MEMORY within a few seconds: r0 is still known (a retry
    // within the client's --timeout is answered, whatever the load).
    const many = 3 * REQUEST_MEMORY;
    for (let i = 1; i <= many; i++) s.applyCommand({ op: 'cordon', time: at(i), nodeId: 'none', cordoned: true, requestId: `r${i}` }, i + 1);
    expect(s.applyCommand({ ...apply('p8', [img('late')]), requestId: 'r0' }, many + 2)).toMatchObject({ ok: true, index: 1 });
    expect(s.get('Image', 'late')).toBeUndefined();
    // Past REQUEST_MEMORY_MS of log time, the oldest beyond the newest REQUEST_MEMORY are gone:
    // the same id now applies afresh (a write, not a retry, this long after).
    const later = s.applyCommand({ op: 'cordon', time: at(REQUEST_MEMORY_MS + many + 1), nodeId: 'none', cordoned: true, requestId: 'later' }, many + 3);
    expect(s.applyCommand({ ...apply('p9', [img('again')]), time: at(REQUEST_MEMORY_MS + many + 2), requestId: 'r0' }, many + 4)).toMatchObject({ ok: true, index: many + 4 });
    const kept = (JSON.parse(Buffer.from(s.snapshot()).toString()) as { requests: [string, unknown, number][] }).requests.map(([id]) => id);
    expect(kept).toHaveLength(REQUEST_MEMORY);
    expect(kept.slice(-2)).toEqual(['later', 'r0']);
    // A snapshot from before the time was kept still loads (its ids count as oldest).
    const old = new DesiredStateStore();
    const legacy = JSON.parse(Buffer.from(s.snapshot()).toString()) as { requests: unknown[][] };
    legacy.requests = legacy.requests.map(([id, outcome]) => [id, outcome]);
    old.restore(Buffer.from(JSON.stringify(legacy)), many + 4);
    expect(old.applyCommand({ ...apply('pz', [img('z')]), requestId: 'later' }, many + 5)).toEqual(later);
    expect(old.get('Image', 'z')).toBeUndefined();
  });

  it('never remembers more than REQUEST_MEMORY_MAX request ids', () => {
    const s = new DesiredStateStore();
    for (let i = 0; i <= REQUEST_MEMORY_MAX; i++) s.applyCommand({ op: 'cordon', time: T, nodeId: 'none', cordoned: true, requestId: `r${i}` }, i + 1);
    const kept = (JSON.parse(Buffer.from(s.snapshot()).toString()) as { requests: [string][] }).requests;
    expect(kept).toHaveLength(REQUEST_MEMORY_MAX);
    expect(kept[0]![0]).toBe('r1');
  });

  it('turns an undecodable entry into an outcome instead of throwing', () => {
    const s = new DesiredStateStore();
    expect(s.apply(Buffer.from('{not json'), 1)).toMatchObject({ ok: false, code: 'unknown' });
    expect(s.appliedIndex).toBe(1);
  });
});

describe('admission', () => {
  const node = (nodeId: string, name: string): import('./commands.js').NodeRecord => ({ nodeId, name, role: 'worker', api: null, addresses: ['127.0.0.1:1'], labels: {}, capacity: { vcpus: 1, memoryMiB: 1 }, formats: [], author: 'auth', registeredAt: T, updatedAt: T });
  it('admits a node with a live join secret, records a Peer named by it, and refuses expired or unknown secrets', () => {
    const s = new DesiredStateStore();
    feed(s, [{ op: 'addJoinSecret', time: T, secretHash: 'h1', role: 'voter', expiresAt: '2026-01-02T00:00:00.000Z' }]);
    expect(s.admitted('a'.repeat(64))).toBe(false);
    expect(s.applyCommand({ op: 'admitNode', time: T, node: node('a'.repeat(64), 'node-a'), secretHash: 'h1' }, 2)).toMatchObject({ ok: true });
    expect(s.admitted('a'.repeat(64))).toBe(true);
    expect(s.get('Peer', 'node-a')).toMatchObject({ spec: { nodeId: 'a'.repeat(64), role: 'voter' }, applyset: null });
    expect(s.node('a'.repeat(64))?.role).toBe('voter');
    expect(s.applyCommand({ op: 'admitNode', time: '2026-01-03T00:00:00.000Z', node: node('b'.repeat(64), 'node-b'), secretHash: 'h1' }, 3)).toMatchObject({ ok: false, code: 'invalid' });
    expect(s.applyCommand({ op: 'admitNode', time: T, node: node('b'.repeat(64), 'node-b'), secretHash: 'nope' }, 4)).toMatchObject({ ok: false });
    expect(s.admitted('b'.repeat(64))).toBe(false);
  });

  it('lets a Peer manifest win over the joining node: its name and role stay as written', () => {
    const s = new DesiredStateStore();
    feed(s, [
      { op: 'addJoinSecret', time: T, secretHash: 'h1', role: 'voter', expiresAt: '2026-01-02T00:00:00.000Z' },
      { op: 'apply', time: T, planId: 'p', applyset: 'd', changes: [{ kind: 'Peer', name: 'declared', action: 'create', read: 0, labels: {}, spec: { nodeId: 'c'.repeat(64), role: 'worker' } }] },
    ]);
    expect(s.admitted('c'.repeat(64))).toBe(true);
    s.applyCommand({ op: 'admitNode', time: T, node: node('c'.repeat(64), 'flag-name'), secretHash: 'h1' }, 3);
    expect(s.list('Peer').map((r) => r.metadata.name)).toEqual(['declared']);
    expect(s.node('c'.repeat(64))?.role).toBe('worker');
  });
});
