import { replayCommand, runSeed, type SimResult, type SimStats } from './simulator.js';

// Running ranges of seeds, shared by the vitest files and the soak runner.

export interface RangeResult {
  results: SimResult[];
  failures: string[];
}

/** Runs seeds [from, to) and describes each failure with the command that replays it. */
export function runRange(from: number, to: number): RangeResult {
  const results: SimResult[] = [];
  const failures: string[] = [];
  for (let seed = from; seed < to; seed++) {
    const r = runSeed(seed);
    results.push(r);
    if (!r.ok) failures.push(describeFailure(r));
  }
  return { results, failures };
}

export function describeFailure(r: SimResult, bug?: string): string {
  const p = r.profile;
  return (
    `seed ${r.seed} failed (${p.nodes} nodes, ${p.style}${p.membership ? ', membership changes' : ''}): ${r.failure}\n` +
    `  replay: ${replayCommand(r.seed, bug)}`
  );
}

/** Sums the counters of many runs. */
export function totals(results: readonly SimResult[]): SimStats {
  const sum = { ...results[0]!.stats };
  for (const k of Object.keys(sum) as (keyof SimStats)[]) sum[k] = 0;
  for (const r of results) for (const k of Object.keys(sum) as (keyof SimStats)[]) sum[k] += r.stats[k];
  return sum;
}

/**
 * What a large enough batch of default seeds must have exercised, as a list of shortfalls (empty
 * when all is well). Guards against a simulator change that quietly stops injecting some fault.
 */
export function coverageShortfalls(results: readonly SimResult[]): string[] {
  if (results.length === 0) return [];
  const t = totals(results);
  const n = results.length;
  const want: [string, number, number][] = [
    ['3-node runs', results.filter((r) => r.profile.nodes === 3).length, n / 5],
    ['5-node runs', results.filter((r) => r.profile.nodes === 5).length, n / 5],
    ['runs with membership changes', results.filter((r) => r.profile.membership).length, n / 5],
    ['crashes', t.crashes, 4 * n],
    ['leaders elected', t.leaders, 4 * n],
    ['snapshots sent', t.snapshotsSent, n / 2],
    ['conf changes accepted', t.confProposed, n],
    ['joint configurations', t.jointChanges, n / 10],
    ['leader removals', t.leaderRemovals, n / 10],
    ['learner promotions', t.promotions, n / 10],
    ['re-added nodes', t.readds, n / 10],
    ['leadership transfers', t.transfers, n / 10],
    ['acknowledged client operations', t.opsOk, 40 * n],
    ['linearizable reads', t.reads, 10 * n],
    ['writes with unknown outcome', t.opsUnknown, n / 2],
  ];
  return want.filter(([, got, min]) => got < min).map(([what, got, min]) => `${what}: ${got} (expected at least ${Math.ceil(min)})`);
}
