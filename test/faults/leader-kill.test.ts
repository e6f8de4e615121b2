import { describe, expect, it } from 'vitest';
import { describeOps } from '../raft-sim/linearizability.js';
import { describeReport, runLeaderFaults, saveHistory } from './leader-fault.js';

// The short version of the leader-kill fault (the long one: `npm run soak -- --faults`): 8
// clients through random nodes while the leader is SIGKILLed three times.

const TIMEOUT_MS = 30_000;

describe('the leader SIGKILLed under an 8-client load', () => {
  it('stays linearizable, loses no acknowledged write, and acknowledges writes again soon after each kill', async () => {
    const r = await runLeaderFaults({ fault: 'sigkill', kills: 3, everyMs: 6000, clients: 8, keys: 4, timeoutMs: TIMEOUT_MS, log: (l) => console.log(l) });
    console.log(describeReport(r));
    if (!r.check.ok) console.log(`the history is in ${await saveHistory(r, 'leader-kill')}:\n${describeOps(r.check.ops)}`);
    expect(r.check.ok).toBe(true);
    expect(r.diverged).toEqual([]);
    // Generous bounds (the 2.5 s target is measured by the soak).
    for (const ms of r.stall) expect(ms).toBeLessThan(10_000);
    expect(r.workload.slowestMs).toBeLessThan(TIMEOUT_MS + 5000);
    expect(r.workload.acks.length).toBeGreaterThan(100);
  }, 180_000);

  it('is able to fail: nodes that answer reads from their own replica are caught', async () => {
    const r = await runLeaderFaults({ fault: 'sigkill', kills: 2, everyMs: 5000, clients: 8, keys: 4, timeoutMs: TIMEOUT_MS, bugs: 'localReads' });
    console.log(`with BLIXARD_TEST_BUGS=localReads: ${describeReport(r)}`);
    expect(r.check.ok).toBe(false);
  }, 180_000);
});
