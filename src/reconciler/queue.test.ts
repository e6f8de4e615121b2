import { describe, expect, it } from 'vitest';
import { WorkQueue, type QueueClock } from './queue.js';

// The work queue's promises: dedup, one worker per key, backoff that doubles and resets.

function fakeClock() {
  let now = 0;
  let timers: { at: number; fn: () => void; id: number }[] = [];
  let next = 0;
  const clock: QueueClock = {
    now: () => now,
    setTimeout: (fn, ms) => {
      const id = ++next;
      timers.push({ at: now + ms, fn, id });
      return id;
    },
    clearTimeout: (id) => {
      timers = timers.filter((t) => t.id !== id);
    },
  };
  const advance = async (ms: number) => {
    now += ms;
    const due = timers.filter((t) => t.at <= now);
    timers = timers.filter((t) => t.at > now);
    for (const t of due) t.fn();
    await new Promise((r) => setImmediate(r));
  };
  return { clock, advance, pending: () => timers.map((t) => t.at - now) };
}

describe('WorkQueue', () => {
  it('dedups a key queued many times, and never runs a key twice at once', async () => {
    const q = new WorkQueue<string>({ concurrency: 4 });
    let concurrent = 0;
    let maxConcurrent = 0;
    const runs: string[] = [];
    let release: () => void = () => {};
    q.start(async (k) => {
      runs.push(k);
      concurrent++;
      maxConcurrent = Math.max(maxConcurrent, concurrent);
      if (k === 'a' && runs.filter((r) => r === 'a').length === 1) await new Promise<void>((r) => (release = r));
      concurrent--;
    });
    q.add('a');
    q.add('a');
    await new Promise((r) => setImmediate(r));
    q.add('a'); // while a runs: it runs once more afterwards, not now
    q.add('a');
    q.add('b');
    await new Promise((r) => setImmediate(r));
    expect(runs).toEqual(['a', 'b']);
    release();
    await q.idle();
    expect(runs).toEqual(['a', 'b', 'a']);
    expect(maxConcurrent).toBe(2);
    q.stop();
  });

  it('backs off a failing key exponentially with jitter, and forget resets it', async () => {
    const { clock, advance, pending } = fakeClock();
    const q = new WorkQueue<string>({ clock, baseDelayMs: 100, maxDelayMs: 1000, random: () => 1 });
    let fail = true;
    let runs = 0;
    q.start(
      async (k) => {
        runs++;
        if (fail) throw new Error('boom');
        q.forget(k);
      },
      () => {},
    );
    q.add('k');
    await q.idle();
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      delays.push(pending()[0]!);
      await advance(pending()[0]!);
      await q.idle();
    }
    expect(delays).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(q.failuresOf('k')).toBe(7);
    fail = false;
    await advance(pending()[0]!);
    await q.idle();
    expect(q.failuresOf('k')).toBe(0);
    expect(runs).toBe(8);
    q.stop();
  });

  it('jitters each retry within [cap/2, cap], so keys that fail together do not retry together', async () => {
    const { clock, advance, pending } = fakeClock();
    const draws = [0, 0.5, 0.25];
    const q = new WorkQueue<string>({ clock, baseDelayMs: 1000, maxDelayMs: 60_000, random: () => draws.shift() ?? 0 });
    q.start(
      async () => {
        throw new Error('boom');
      },
      () => {},
    );
    q.add('a');
    await q.idle();
    expect(pending()).toEqual([500]); // first failure: cap 1000, draw 0 -> 500
    await advance(500);
    await q.idle();
    expect(pending()).toEqual([1500]); // second: cap 2000, draw 0.5 -> 1000 + 500
    await advance(1500);
    await q.idle();
    expect(pending()).toEqual([2500]); // third: cap 4000, draw 0.25 -> 2000 + 500
    q.stop();
    // With the real random source, many keys failing at once spread their retries out.
    const { clock: c2, pending: p2 } = fakeClock();
    const q2 = new WorkQueue<string>({ clock: c2, baseDelayMs: 1000, concurrency: 50 });
    q2.start(
      async () => {
        throw new Error('boom');
      },
      () => {},
    );
    for (let i = 0; i < 50; i++) q2.add(`k${i}`);
    await q2.idle();
    const delays = p2();
    expect(delays).toHaveLength(50);
    expect(delays.every((d) => d >= 500 && d <= 1000)).toBe(true);
    expect(new Set(delays).size).toBeGreaterThan(10);
    q2.stop();
  });

  it('requeues a key after the delay its worker asks for', async () => {
    const { clock, advance } = fakeClock();
    const q = new WorkQueue<string>({ clock });
    let runs = 0;
    q.start(async () => {
      runs++;
      return runs < 3 ? { requeueAfterMs: 5000 } : undefined;
    });
    q.add('resync');
    await q.idle();
    await advance(4999);
    expect(runs).toBe(1);
    await advance(1);
    await q.idle();
    await advance(5000);
    await q.idle();
    expect(runs).toBe(3);
    q.stop();
  });
});
