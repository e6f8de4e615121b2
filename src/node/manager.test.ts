import { describe, expect, it } from 'vitest';
import type { Runnable } from '../lifecycle/index.js';
import { Manager } from './manager.js';

// The manager starts parts in order, stops them in reverse within a deadline per step, and runs
// leader-only parts exactly while the node leads.

function part(name: string, log: string[], o: { stop?: () => Promise<void>; start?: () => Promise<void> } = {}): Runnable {
  return {
    name,
    start: async () => {
      log.push(`start ${name}`);
      await o.start?.();
    },
    stop: async () => {
      log.push(`stop ${name}`);
      await o.stop?.();
    },
  };
}

const quiet = { warn: () => {} };
const settle = () => new Promise<void>((r) => setTimeout(r, 5));

describe('Manager', () => {
  it('starts in order, stops in reverse, adopted parts only stopped', async () => {
    const log: string[] = [];
    const m = new Manager({ log: quiet });
    m.adopt('iroh', () => void log.push('stop iroh'));
    m.add(part('a', log));
    m.add(part('b', log));
    await m.start();
    await m.stop();
    expect(log).toEqual(['start a', 'start b', 'stop b', 'stop a', 'stop iroh']);
  });

  it('a step that does not finish within its deadline is logged and the rest goes on', async () => {
    const log: string[] = [];
    const warned: string[] = [];
    const m = new Manager({ log: { warn: (_o, msg) => void warned.push(msg ?? '') }, stepDeadlineMs: 50 });
    m.add(part('a', log));
    m.add(part('stuck', log, { stop: () => new Promise(() => {}) }));
    m.add(part('failing', log, { stop: async () => Promise.reject(new Error('boom')) }));
    await m.start();
    const t0 = Date.now();
    await m.stop();
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(log).toEqual(['start a', 'start stuck', 'start failing', 'stop failing', 'stop stuck', 'stop a']);
    expect(warned).toEqual(['stopping a part failed', 'stopping stuck did not finish within 0.05 s; going on']);
  });

  it('stopping twice stops once, and is `stopping` from its first step', async () => {
    const log: string[] = [];
    const m = new Manager({ log: quiet });
    let seen: boolean | undefined;
    m.add(part('a', log, { stop: async () => void (seen = m.stopping) }));
    await m.start();
    await Promise.all([m.stop(), m.stop()]);
    expect(seen).toBe(true);
    expect(log).toEqual(['start a', 'stop a']);
  });

  it('leader-only parts start when the node leads (after the rest) and stop when it no longer does', async () => {
    const log: string[] = [];
    const m = new Manager({ log: quiet });
    m.add(part('a', log));
    m.add(part('scheduler', log), { leaderOnly: true });
    m.add(part('duties', log), { leaderOnly: true });
    m.add(part('b', log));
    void m.setLeader(true); // before start: remembered
    await m.start();
    await m.setLeader(true);
    expect(log).toEqual(['start a', 'start b', 'start scheduler', 'start duties']);
    await m.setLeader(false);
    expect(log.slice(4)).toEqual(['stop duties', 'stop scheduler']);
    await m.setLeader(false);
    await m.setLeader(true);
    expect(log.slice(6)).toEqual(['start scheduler', 'start duties']);
    await m.stop();
    expect(log.slice(8)).toEqual(['stop b', 'stop duties', 'stop scheduler', 'stop a']);
  });

  it('a leadership that flaps is followed in order, ending as the last word says', async () => {
    const log: string[] = [];
    const m = new Manager({ log: quiet });
    m.add(part('scheduler', log, { start: settle, stop: settle }), { leaderOnly: true });
    await m.start();
    void m.setLeader(true);
    void m.setLeader(false);
    await m.setLeader(true);
    expect(m.list()).toEqual([{ name: 'scheduler', leaderOnly: true, running: true }]);
    await m.stop();
    expect(m.list()[0]!.running).toBe(false);
  });

  it('a leader part still starting when the node stops is stopped too', async () => {
    const log: string[] = [];
    const m = new Manager({ log: quiet });
    let release!: () => void;
    m.add(part('scheduler', log, { start: () => new Promise<void>((r) => (release = r)) }), { leaderOnly: true });
    await m.start();
    const lead = m.setLeader(true);
    await settle();
    await m.stop();
    release();
    await lead;
    expect(log).toEqual(['start scheduler', 'stop scheduler']);
  });

  it('parts after a failed start are not started, and what started is stopped by the caller', async () => {
    const log: string[] = [];
    const m = new Manager({ log: quiet });
    m.add(part('a', log));
    m.add(part('bad', log, { start: () => Promise.reject(new Error('no')) }));
    m.add(part('c', log));
    await expect(m.start()).rejects.toThrow('no');
    await m.stop();
    expect(log).toEqual(['start a', 'start bad', 'stop a']);
  });
});
