import { describe, expect, it } from 'vitest';
import { DesiredStateStore, encodeCommand, type DesiredResource } from '../state/index.js';
import { buildPlan, planChanges, planCounts } from './plan.js';

// Desired against stored: create, configure (with effects), unchanged, prune. Pure.

const T = '2026-01-01T00:00:00.000Z';
const image: DesiredResource = { kind: 'Image', name: 'base', labels: {}, spec: { path: 'vmlinuz', format: 'kernel' }, source: { hash: `blake3:${'a'.repeat(64)}`, size: 3 } };
const vm = (name: string, spec: Record<string, unknown> = {}, labels: Record<string, string> = {}): DesiredResource => ({ kind: 'VirtualMachine', name, labels, spec: { image: 'base', ...spec } });

function storeWith(desired: DesiredResource[], applyset = 'default') {
  const s = new DesiredStateStore();
  const plan = buildPlan({ desired, get: (k, n) => s.get(k, n), inventory: [], applyset, prune: false, id: 'seed', clusterId: null, createdAt: T });
  s.apply(encodeCommand({ op: 'apply', time: T, planId: plan.id, applyset, changes: planChanges(plan) }), 1);
  return s;
}

function plan(s: DesiredStateStore, desired: DesiredResource[], prune = false, applyset = 'default') {
  return buildPlan({ desired, get: (k, n) => s.get(k, n), inventory: s.inventory(applyset), applyset, prune, id: 'p', clusterId: null, createdAt: T });
}

describe('buildPlan', () => {
  it('creates what is missing and records that it read nothing (version 0)', () => {
    const p = plan(new DesiredStateStore(), [image, vm('a')]);
    expect(p.changes.map((c) => [c.action, c.read])).toEqual([
      ['create', 0],
      ['create', 0],
    ]);
  });

  it('leaves unchanged what only differs by defaults', () => {
    const s = storeWith([image, vm('a')]);
    const p = plan(s, [image, vm('a', { vcpus: 1, memoryMiB: 256, state: 'Running', restartPolicy: 'Always', ports: [] })]);
    expect(planCounts(p)).toEqual({ create: 0, configure: 0, unchanged: 2, prune: 0 });
    expect(p.changes[1]!.read).toBe(1);
  });

  it('labels a configure with the effect of its fields', () => {
    const s = storeWith([image, vm('a'), vm('b')]);
    const p = plan(s, [image, vm('a', { memoryMiB: 512 }), vm('b', { kernelArgs: 'quiet' }, { tier: 'x' })]);
    const a = p.changes.find((c) => c.name === 'a')!;
    const b = p.changes.find((c) => c.name === 'b')!;
    expect([a.action, a.effect, a.fields.map((f) => f.field)]).toEqual(['configure', 'recreate', ['spec.memoryMiB']]);
    expect([b.effect, b.fields.map((f) => `${f.field}:${f.effect}`).sort()]).toEqual(['restart', ['metadata.labels.tier:in-place', 'spec.kernelArgs:restart']]);
    expect(a.patch).toEqual([{ op: 'replace', path: '/spec/memoryMiB', value: 512 }]);
  });

  it('treats new image content under the same path as a change', () => {
    const s = storeWith([image]);
    const p = plan(s, [{ ...image, source: { hash: `blake3:${'b'.repeat(64)}`, size: 4 } }]);
    expect(p.changes[0]).toMatchObject({ action: 'configure', effect: 'restart' });
  });

  it('prunes only the inventory of its applyset, and only with prune', () => {
    const s = storeWith([image, vm('a'), vm('b')], 'team');
    expect(planCounts(plan(s, [image, vm('a')], false, 'team')).prune).toBe(0);
    const p = plan(s, [image, vm('a')], true, 'team');
    expect(p.changes.filter((c) => c.action === 'prune').map((c) => c.name)).toEqual(['b']);
    expect(planCounts(plan(s, [image], true, 'other')).prune).toBe(0);
  });
});
