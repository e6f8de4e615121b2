import { describe, expect, it } from 'vitest';
import { describeOps } from '../raft-sim/linearizability.js';
import { describeReport, runLeaderFaults, saveHistory } from './leader-fault.js';

// The leader paused with SIGSTOP for longer than an election timeout, under 8 clients, then
// continued: the others elect a new leader meanwhile; the old one wakes up with requests it took
// before the pause still to answer, believing it leads. It must step down, and nothing it says
// from its old state may be believed.

const TIMEOUT_MS = 30_000;

describe('the leader paused (SIGSTOP) past an election timeout under an 8-client load', () => {
  it('stays linearizable and loses no acknowledged write; the paused leader steps down', async () => {
    const r = await runLeaderFaults({ fault: 'sigstop', kills: 2, everyMs: 5000, restartAfterMs: 2500, clients: 8, keys: 4, timeoutMs: TIMEOUT_MS, log: (l) => console.log(l) });
    console.log(describeReport(r));
    if (!r.check.ok) console.log(`the history is in ${await saveHistory(r, 'leader-pause')}:\n${describeOps(r.check.ops)}`);
    expect(r.check.ok).toBe(true);
    expect(r.diverged).toEqual([]);
    for (const ms of r.stall) expect(ms).toBeLessThan(10_000);
    // The calls a paused node held wait out the pause, not the client's whole budget.
    expect(r.workload.slowestMs).toBeLessThan(TIMEOUT_MS);
  }, 180_000);

  it('is able to fail: a leader that answers reads without asking a quorum is caught when it wakes up', async () => {
    const r = await runLeaderFaults({ fault: 'sigstop', kills: 2, everyMs: 4000, restartAfterMs: 2500, clients: 8, keys: 4, timeoutMs: TIMEOUT_MS, bugs: 'leaderReadsWithoutQuorum' });
    console.log(`with BLIXARD_TEST_BUGS=leaderReadsWithoutQuorum: ${describeReport(r)}`);
    expect(r.check.ok).toBe(false);
  }, 180_000);
});
