import { describe, expect, it } from 'vitest';
import { TransferLimiter, type LimiterClock } from './limiter.js';

// The rate limiter on a fake clock: pacing, burst, priority, abort.

class FakeClock implements LimiterClock {
  t = 0;
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private ids = 0;
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.ids;
    this.timers.push({ at: this.t + ms, fn, id });
    return id;
  }
  clearTimeout(id: unknown): void {
    this.timers = this.timers.filter((x) => x.id !== id);
  }
  /** Advances time, firing timers in order. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    await new Promise((r) => setImmediate(r));
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at);
      const next = this.timers[0];
      if (!next || next.at > end) break;
      this.timers.shift();
      this.t = next.at;
      next.fn();
      await new Promise((r) => setImmediate(r));
    }
    this.t = end;
    await new Promise((r) => setImmediate(r));
  }
}

const MiB = 1024 * 1024;

describe('TransferLimiter', () => {
  it('unlimited: grants at once', async () => {
    const l = new TransferLimiter({ bytesPerSec: null });
    await l.acquire(100 * MiB);
    expect(l.granted.vm).toBe(100 * MiB);
  });

  it('paces pieces at the configured rate after one burst', async () => {
    const clock = new FakeClock();
    const l = new TransferLimiter({ bytesPerSec: 10 * MiB, burstBytes: 8 * MiB, clock });
    const grantedAt: number[] = [];
    const all = Array.from({ length: 5 }, () => l.acquire(8 * MiB).then(() => grantedAt.push(clock.t)));
    await clock.advance(10_000);
    await Promise.all(all);
    // first at once (the bucket starts full), then one every 8 MiB / 10 MiB/s = 800 ms
    expect(grantedAt).toEqual([0, 800, 1600, 2400, 3200]);
  });

  it('holds the long-run rate within one burst', async () => {
    const clock = new FakeClock();
    const rate = 5 * MiB;
    const l = new TransferLimiter({ bytesPerSec: rate, burstBytes: 8 * MiB, clock });
    let granted = 0;
    for (let i = 0; i < 40; i++) void l.acquire(2 * MiB).then(() => (granted += 2 * MiB));
    await clock.advance(10_000);
    expect(granted).toBeLessThanOrEqual(rate * 10 + 8 * MiB);
    expect(granted).toBeGreaterThanOrEqual(rate * 10 - 2 * MiB);
  });

  it('serves VMs waiting to start before cache warming', async () => {
    const clock = new FakeClock();
    const l = new TransferLimiter({ bytesPerSec: 8 * MiB, burstBytes: 8 * MiB, clock });
    const order: string[] = [];
    await l.acquire(8 * MiB, 'warm'); // empties the bucket
    const w1 = l.acquire(8 * MiB, 'warm').then(() => order.push('warm1'));
    const w2 = l.acquire(8 * MiB, 'warm').then(() => order.push('warm2'));
    const v1 = l.acquire(8 * MiB, 'vm').then(() => order.push('vm1'));
    await clock.advance(5_000);
    await Promise.all([w1, w2, v1]);
    expect(order).toEqual(['vm1', 'warm1', 'warm2']);
  });

  it('a piece larger than the burst still goes, and the debt is paid before the next', async () => {
    const clock = new FakeClock();
    const l = new TransferLimiter({ bytesPerSec: 1 * MiB, burstBytes: 1 * MiB, clock });
    const at: number[] = [];
    const a = l.acquire(4 * MiB).then(() => at.push(clock.t));
    const b = l.acquire(1 * MiB).then(() => at.push(clock.t));
    await clock.advance(10_000);
    await Promise.all([a, b]);
    expect(at).toEqual([0, 4000]);
  });

  it('an aborted wait leaves the queue', async () => {
    const clock = new FakeClock();
    const l = new TransferLimiter({ bytesPerSec: 1 * MiB, burstBytes: 1 * MiB, clock });
    await l.acquire(1 * MiB);
    const ac = new AbortController();
    const p = l.acquire(1 * MiB, 'vm', ac.signal);
    ac.abort();
    await expect(p).rejects.toThrow(/abort/);
    expect(l.waiting).toBe(0);
  });

  it('setRate takes effect for those waiting', async () => {
    const clock = new FakeClock();
    const l = new TransferLimiter({ bytesPerSec: 1, burstBytes: 1 * MiB, clock });
    await l.acquire(1 * MiB);
    let done = false;
    void l.acquire(1 * MiB).then(() => (done = true));
    await clock.advance(1000);
    expect(done).toBe(false);
    l.setRate(null);
    await clock.advance(1);
    expect(done).toBe(true);
  });
});
