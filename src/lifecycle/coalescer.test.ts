import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Coalescer } from './coalescer.js';

describe('Coalescer', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('runs a lone ask at once, and a burst at most once per gap', () => {
    let runs = 0;
    const c = new Coalescer(() => runs++, 20, () => Date.now());
    c.kick();
    vi.advanceTimersByTime(0);
    expect(runs).toBe(1); // no fixed delay for a change that comes alone
    // 1,000 asks over 100 ms: one run per 20 ms, and one for the last asks.
    for (let i = 0; i < 1000; i++) {
      c.kick();
      vi.advanceTimersByTime(0.1);
    }
    vi.advanceTimersByTime(20);
    expect(runs).toBeGreaterThanOrEqual(5);
    expect(runs).toBeLessThanOrEqual(7);
    const before = runs;
    c.kick();
    c.cancel();
    vi.advanceTimersByTime(100);
    expect(runs).toBe(before);
  });
});
