import { afterEach, describe, expect, it } from 'vitest';
import { MemDriver, MemView, memReconciler } from '../../test/helpers/mem-vms.js';
import { until } from '../../test/helpers/until.js';
import type { NodeReconciler } from './node-reconciler.js';

// The node reconciler's loop against an in-memory driver: what it does on its own (resync),
// what it does first (stop what it no longer owns), and what it refuses (starting while fenced).

let running: NodeReconciler[] = [];
afterEach(async () => {
  for (const r of running) await r.stop();
  running = [];
});

function reconciler(view: MemView, drv: MemDriver, o: Parameters<typeof memReconciler>[2] = {}) {
  const made = memReconciler(view, drv, o);
  running.push(made.r);
  return made;
}


describe('NodeReconciler', () => {
  it('creates and starts what is placed here, and reports it Running', async () => {
    const view = new MemView();
    view.place('a', 'me');
    view.place('b', 'other');
    const drv = new MemDriver();
    const { r, reports } = reconciler(view, drv);
    await r.start();
    await until('a running', () => reports.get('a')?.phase === 'Running');
    expect(drv.vms.has('b')).toBe(false);
  });

  it('heals a change nobody told it about at the next resync (level-triggered)', async () => {
    const view = new MemView();
    view.place('a', 'me');
    const drv = new MemDriver();
    const { r, reports } = reconciler(view, drv, { resyncMs: 100 });
    await r.start();
    await until('a running', () => reports.get('a')?.phase === 'Running');
    // Removed behind the reconciler's back, and no kick(): only the periodic resync can see it.
    drv.vms.delete('a');
    drv.log.length = 0;
    await until('a created again', () => drv.vms.get('a')?.running === true, 3000);
    expect(drv.log).toEqual(['create a', 'start a']);
  });

  it('notices within about a second, not at the next resync, that a running VM process is gone', async () => {
    const view = new MemView();
    view.place('a', 'me');
    const drv = new MemDriver();
    const dead = new Set<number>();
    const { r, reports } = reconciler(view, drv, { resyncMs: 60_000, alive: (pid) => !dead.has(pid) });
    await r.start();
    await until('a running', () => reports.get('a')?.phase === 'Running');
    const pid = (await drv.inspect('a')).pid!;
    // The process dies and its folder goes, behind the reconciler's back.
    drv.vms.delete('a');
    dead.add(pid);
    drv.log.length = 0;
    const t0 = Date.now();
    await until('a created again', () => drv.vms.get('a')?.running === true, 3000);
    expect(Date.now() - t0).toBeLessThan(2500);
    expect(drv.log).toEqual(['create a', 'start a']);
  });

  it('stops the VMs it no longer owns before it starts anything', async () => {
    const view = new MemView();
    view.place('mine', 'me');
    view.place('moved', 'elsewhere');
    const drv = new MemDriver();
    // Left running here by an earlier life of this node; the cluster has placed it elsewhere since.
    drv.vms.set('moved', { uid: 'uid-moved', running: true, launch: 1 });
    const { r } = reconciler(view, drv);
    await r.start();
    await until('mine running', () => drv.vms.get('mine')?.running === true);
    const deleteMoved = drv.log.indexOf('delete moved');
    expect(deleteMoved).toBeGreaterThanOrEqual(0);
    expect(deleteMoved).toBeLessThan(drv.log.indexOf('start mine'));
  });

  it('a VM removed from under it that is no longer wanted does not hold back later starts', async () => {
    const view = new MemView();
    view.place('old', 'me');
    const drv = new MemDriver();
    const { r } = reconciler(view, drv, { resyncMs: 100 });
    await r.start();
    await until('old running', () => drv.vms.get('old')?.running === true);
    // Deleted from the cluster and gone from the driver before the reconciler looked again.
    view.resources = view.resources.filter((x) => x.metadata.name !== 'old');
    view.placements.delete('old');
    drv.vms.delete('old');
    view.place('new', 'me');
    r.kick();
    await until('new running', () => drv.vms.get('new')?.running === true, 3000);
  });

  it('while fenced it stops what runs and starts nothing; once in touch again it starts', async () => {
    const view = new MemView();
    view.place('a', 'me');
    view.place('b', 'me');
    const drv = new MemDriver();
    drv.vms.set('a', { uid: 'uid-a', running: true, launch: 1 });
    let gate = { fenced: true, mayStart: false };
    const { r } = reconciler(view, drv, { resyncMs: 100, gate: () => gate });
    await r.start();
    await until('a stopped', () => drv.vms.get('a')?.running === false);
    await new Promise((res) => setTimeout(res, 300));
    expect(drv.log.filter((l) => l.startsWith('start'))).toEqual([]);
    gate = { fenced: false, mayStart: true };
    r.kick();
    await until('both running', () => drv.vms.get('a')?.running === true && drv.vms.get('b')?.running === true);
  });

  it('after a commit looks only at the VMs whose desired state here changed (new, changed, gone)', async () => {
    const view = new MemView();
    for (const n of ['a', 'b', 'c']) view.place(n, 'me');
    const drv = new MemDriver();
    const { r } = reconciler(view, drv);
    await r.start();
    await until('all running', () => ['a', 'b', 'c'].every((n) => drv.vms.get(n)?.running === true));
    await new Promise((res) => setTimeout(res, 50));
    drv.inspected.length = 0;
    r.desiredChanged(); // a commit that changed nothing placed here
    await new Promise((res) => setTimeout(res, 50));
    expect(drv.inspected).toEqual([]);
    view.place('d', 'me'); // new
    view.resources = view.resources.map((x) => (x.metadata.name === 'b' ? { ...x, metadata: { ...x.metadata, generation: 2 }, spec: { image: 'app', vcpus: 2 } } : x)); // changed
    view.placements.set('c', { ...view.placements.get('c')!, nodeId: 'elsewhere' }); // gone from here
    r.desiredChanged();
    await until('d running, c stopped', () => drv.vms.get('d')?.running === true && !drv.vms.has('c'));
    expect(new Set(drv.inspected)).toEqual(new Set(['b', 'c', 'd']));
  });
});
