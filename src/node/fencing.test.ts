import { afterEach, describe, expect, it } from 'vitest';
import { MemDriver, MemView, memReconciler } from '../../test/helpers/mem-vms.js';
import { until } from '../../test/helpers/until.js';
import { Directory, Fence } from '../cluster/index.js';
import type { ClusterLog } from '../raft/index.js';
import { DesiredStateStore } from '../state/index.js';
import type { Documents } from '../sync/index.js';
import { NodeFencing } from './fencing.js';

// A voter's fencing as the daemon wires it (cluster rules, its log, its reconciler), with an
// injected clock: cut off for --fence-after it stops its VMs; back in touch, it first confirms its
// view, then stops the VMs it no longer owns, and only then starts anything.

const TIMEOUT = 10_000;
const FENCE = 20_000;

let stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of stops) await s();
  stops = [];
});

function node() {
  const clock = { now: 1_000_000 };
  // Confirmation rounds answer at once unless `hold` keeps them waiting until `release()`.
  const state = { contact: clock.now, barrierAsked: 0, hold: false, release: () => {} };
  const log = {
    leader: 'L',
    get lastClusterContact() {
      return state.contact;
    },
    readBarrier: () => {
      state.barrierAsked++;
      return state.hold ? new Promise<void>((r) => (state.release = r)) : Promise.resolve();
    },
  } as unknown as ClusterLog;
  const store = new DesiredStateStore();
  Object.defineProperty(store, 'clusterId', { get: () => 'c1' });
  const fencing = new NodeFencing({
    fence: new Fence({ role: 'voter', startedAt: clock.now, nodeTimeoutMs: TIMEOUT, fenceAfterMs: FENCE, now: () => clock.now }),
    role: 'voter',
    log,
    store,
    docs: { current: undefined } as unknown as Documents,
    directory: new Directory({ self: 'me', store, trusted: () => [], awaitingPeer: false }),
    nodeTimeoutMs: TIMEOUT,
    onError: (e) => {
      throw e;
    },
    logger: { warn() {}, info() {} },
  });
  const view = new MemView();
  const drv = new MemDriver();
  const { r: reconciler } = memReconciler(view, drv, { resyncMs: 200, gate: () => fencing.gate() });
  fencing.changed.connect(() => reconciler.kick());
  stops.push(() => reconciler.stop());
  return { clock, state, fencing, view, drv, reconciler };
}

describe('fencing, end to end on one node', () => {
  it('cut off: stops its VMs; back: confirms, stops what it no longer owns, then starts', async () => {
    const { clock, state, fencing, view, drv, reconciler } = node();
    view.place('a', 'me');
    await reconciler.start();
    // A round asked at the very start proves nothing newer than the start: time moves on.
    clock.now += 10;
    state.contact = clock.now;
    await until('a running', () => {
      fencing.tick();
      return drv.vms.get('a')?.running === true;
    });
    expect(state.barrierAsked).toBeGreaterThanOrEqual(1);

    // Cut off: no contact from now on. Within --fence-after nothing stops.
    const cutAt = clock.now;
    clock.now = cutAt + FENCE;
    fencing.tick();
    await new Promise((r) => setTimeout(r, 300));
    expect(drv.vms.get('a')?.running).toBe(true);
    // Past it: fenced, the VM stops.
    clock.now = cutAt + FENCE + 1;
    fencing.tick();
    await until('a stopped while fenced', () => drv.vms.get('a')?.running === false);

    // Meanwhile the cluster ran `a` elsewhere and placed `b` here.
    view.place('a', 'elsewhere');
    view.place('b', 'me');
    reconciler.desiredChanged();
    await new Promise((r) => setTimeout(r, 300));
    expect(drv.log.filter((l) => l.startsWith('start') || l.startsWith('create b'))).toEqual(['start a']);

    // Back in touch: a confirmation round is asked first; only after it are things started.
    const returnedAt = drv.log.length;
    clock.now += 1_000;
    state.contact = clock.now;
    const asked = state.barrierAsked;
    state.hold = true;
    fencing.tick();
    expect(state.barrierAsked).toBe(asked + 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(drv.vms.has('b')).toBe(false); // not before the round answers
    state.hold = false;
    state.release();
    clock.now += 10;
    state.contact = clock.now;
    await until('b running', () => {
      fencing.tick();
      return drv.vms.get('b')?.running === true;
    });
    expect(drv.vms.has('a')).toBe(false);
    // (A VM no longer placed here may go even while fenced: deleting never runs anything.)
    expect(drv.log.indexOf('delete a')).toBeGreaterThanOrEqual(0);
    expect(drv.log.indexOf('delete a')).toBeLessThan(drv.log.indexOf('create b'));
    expect(drv.log.indexOf('create b')).toBeGreaterThanOrEqual(returnedAt);
  });
});
