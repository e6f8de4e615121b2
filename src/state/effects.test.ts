import { describe, expect, it } from 'vitest';
import { changeEffects, comparable } from './effects.js';
import type { Effect, ImageSource, ImageSpec, Kind, Labels, Spec, VmSpec } from './types.js';

// The effect label of each spec field: one pure function decides, for diffs, saved plans and the
// node reconciler alike.

const vmBase: VmSpec = { image: 'tiny', vcpus: 1, memoryMiB: 256, kernelArgs: 'console=ttyS0', ports: [{ host: 8080, guest: 80 }], placement: { nodeSelector: { zone: 'a' }, spreadBy: 'app' } };
const imgBase: ImageSpec = { path: 'vmlinuz', format: 'kernel', initrd: 'initrd.img', readyPattern: 'READY' };
const src: ImageSource = { hash: `blake3:${'1'.repeat(64)}`, size: 10, initrdHash: `blake3:${'2'.repeat(64)}`, initrdSize: 5 };

function effect(kind: Kind, before: Spec, after: Spec, opts: { labels?: [Labels, Labels]; source?: [ImageSource?, ImageSource?] } = {}) {
  const [lb, la] = opts.labels ?? [{}, {}];
  const [sb, sa] = opts.source ?? [undefined, undefined];
  return changeEffects(kind, comparable(kind, lb, before, sb), comparable(kind, la, after, sa));
}

describe('effect of each VirtualMachine field on a running VM', () => {
  const cases: [string, Partial<VmSpec>, Effect][] = [
    ['image', { image: 'other' }, 'recreate'],
    ['vcpus', { vcpus: 2 }, 'recreate'],
    ['memoryMiB', { memoryMiB: 512 }, 'recreate'],
    ['placement.nodeSelector', { placement: { nodeSelector: { zone: 'b' }, spreadBy: 'app' } }, 'recreate'],
    ['placement.spreadBy', { placement: { nodeSelector: { zone: 'a' }, spreadBy: 'tier' } }, 'in-place'],
    ['kernelArgs', { kernelArgs: 'console=ttyS0 quiet' }, 'restart'],
    ['ports', { ports: [{ host: 8081, guest: 80 }] }, 'restart'],
    ['state', { state: 'Stopped' }, 'in-place'],
    ['restartPolicy', { restartPolicy: 'Never' }, 'in-place'],
  ];
  for (const [field, change, want] of cases) {
    it(`${field} -> ${want}`, () => {
      const fx = effect('VirtualMachine', vmBase, { ...vmBase, ...change });
      expect(fx.effect).toBe(want);
      expect(fx.specChanged).toBe(true);
      expect(fx.fields.every((f) => f.field.startsWith(`spec.${field.split('.')[0]}`))).toBe(true);
    });
  }

  it('labels -> in-place, and do not count as a spec change', () => {
    const fx = effect('VirtualMachine', vmBase, vmBase, { labels: [{ app: 'a' }, { app: 'b' }] });
    expect(fx.effect).toBe('in-place');
    expect(fx.specChanged).toBe(false);
    expect(fx.fields).toEqual([{ field: 'metadata.labels.app', op: 'replace', effect: 'in-place' }]);
  });

  it('the strongest field wins', () => {
    expect(effect('VirtualMachine', vmBase, { ...vmBase, kernelArgs: 'x', memoryMiB: 1024, restartPolicy: 'Never' }).effect).toBe('recreate');
    expect(effect('VirtualMachine', vmBase, { ...vmBase, kernelArgs: 'x', restartPolicy: 'Never' }).effect).toBe('restart');
  });

  it('defaults never show as a difference', () => {
    const fx = effect('VirtualMachine', { image: 'tiny' }, { image: 'tiny', vcpus: 1, memoryMiB: 256, state: 'Running', restartPolicy: 'Always', ports: [] });
    expect(fx.patch).toEqual([]);
    expect(fx.effect).toBe('none');
  });
});

describe('effect of each Image field on the VMs that run it', () => {
  const cases: [string, Partial<ImageSpec>, Effect][] = [
    ['format', { format: 'raw', initrd: undefined }, 'recreate'],
    ['path', { path: 'elsewhere/vmlinuz' }, 'in-place'],
    ['initrd', { initrd: 'other.img' }, 'in-place'],
    ['readyPattern', { readyPattern: 'UP' }, 'in-place'],
    ['hash', { hash: src.hash }, 'in-place'],
  ];
  for (const [field, change, want] of cases) {
    it(`${field} -> ${want}`, () => {
      const after = { ...imgBase, ...change };
      if (after.initrd === undefined) delete after.initrd;
      expect(effect('Image', imgBase, after, { source: [src, src] }).effect).toBe(want);
    });
  }

  it('blob -> the effect of its content: none for the same hash, restart or recreate for new content', () => {
    const byBlob: ImageSpec = { blob: src.hash, format: 'kernel' };
    const sameContent = effect('Image', imgBase, byBlob, { source: [src, src] });
    expect(sameContent.fields.map((f) => f.field)).toContain('spec.blob');
    expect(sameContent.effect).toBe('in-place');
    const other = `blake3:${'4'.repeat(64)}`;
    expect(effect('Image', byBlob, { ...byBlob, blob: other }, { source: [src, { ...src, hash: other }] }).effect).toBe('restart');
    const disk: ImageSpec = { blob: src.hash, format: 'raw' };
    expect(effect('Image', disk, { ...disk, blob: other }, { source: [src, { ...src, hash: other }] }).effect).toBe('recreate');
  });

  it('new content: restart for kernels and executables, recreate for disks (their overlay)', () => {
    const newer = { ...src, hash: `blake3:${'3'.repeat(64)}` };
    expect(effect('Image', imgBase, imgBase, { source: [src, newer] }).effect).toBe('restart');
    const disk: ImageSpec = { path: 'disk.qcow2', format: 'qcow2' };
    expect(effect('Image', disk, disk, { source: [src, newer] }).effect).toBe('recreate');
    expect(effect('Image', imgBase, imgBase, { source: [src, { ...src, initrdHash: newer.hash }] }).effect).toBe('restart');
  });
});

describe('Peer fields', () => {
  const peer = { nodeId: 'a'.repeat(64) };
  const cases: [string, object][] = [
    ['nodeId', { nodeId: 'b'.repeat(64) }],
    ['role', { role: 'voter' }],
    ['addresses', { addresses: ['127.0.0.1:4501'] }],
    ['capacity', { capacity: { vcpus: 8, memoryMiB: 16384 } }],
  ];
  for (const [field, change] of cases) {
    it(`${field} -> in-place (membership, not a guest)`, () => {
      const fx = effect('Peer', peer, { ...peer, ...change });
      expect(fx.effect).toBe('in-place');
      expect(fx.specChanged).toBe(true);
      expect(fx.fields.length).toBeGreaterThan(0);
      expect(fx.fields.every((f) => f.field.startsWith(`spec.${field}`) && f.effect === 'in-place')).toBe(true);
    });
  }

  it('never touch a guest', () => {
    const fx = effect('Peer', { nodeId: 'a'.repeat(64) }, { nodeId: 'a'.repeat(64), role: 'voter', addresses: ['127.0.0.1:1'], capacity: { vcpus: 2 } });
    expect(fx.effect).toBe('in-place');
    expect(fx.specChanged).toBe(true);
  });
});
