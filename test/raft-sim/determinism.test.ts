import { describe, it, expect } from 'vitest';
import { runSeed } from './simulator.js';

describe('determinism', () => {
  it('the same seed replays exactly the same run', () => {
    for (const seed of [3, 42, 1234]) {
      const a = runSeed(seed);
      const b = runSeed(seed);
      expect(b.traceHash).toBe(a.traceHash);
      expect(b.stats).toEqual(a.stats);
    }
  });

  it('with the bug switch too (a failing run replays to the same failure)', () => {
    const a = runSeed(2, { bugs: { commitOldTermByCount: true } });
    const b = runSeed(2, { bugs: { commitOldTermByCount: true } });
    expect(b.traceHash).toBe(a.traceHash);
    expect(b.failure).toBe(a.failure);
  });

  it('different seeds give different runs', () => {
    const hashes = new Set([1, 2, 3, 4, 5].map((s) => runSeed(s).traceHash));
    expect(hashes.size).toBe(5);
  });

  it('logging every event does not change the run', () => {
    const lines: string[] = [];
    const a = runSeed(7, { log: (l) => lines.push(l) });
    expect(a.traceHash).toBe(runSeed(7).traceHash);
    expect(lines.length).toBeGreaterThan(1000);
  });
});
