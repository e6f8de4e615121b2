import { describe, expect, it } from 'vitest';
import { describeOps } from '../raft-sim/linearizability.js';
import { runDiskFull } from './disk-full.js';
import { saveHistory } from './verdict.js';

// A follower's data dir (a 96 MiB tmpfs) filled up for 4 s under 8 clients, then freed.

const opts = { holdMs: 4000, clients: 8, keys: 4, timeoutMs: 30_000 };

describe('a follower whose data dir fills up', () => {
  it('says so, acknowledges nothing meanwhile, and catches up once space returns; nothing is corrupted', async () => {
    const r = await runDiskFull({ ...opts, log: (l) => console.log(l) });
    const w = r.workload;
    console.log(`longest stall while full ${r.stallMs} ms; caught up ${r.caughtUpMs} ms after space returned; ${w.acks.length} writes acknowledged, ${w.ops.length} operations; unknown ${JSON.stringify(w.failed)}; ${r.check.ok ? 'linearizable' : 'NOT linearizable'}`);
    if (!r.check.ok) console.log(`the history is in ${await saveHistory(r, 'disk-full')}:\n${describeOps(r.check.ops)}`);
    expect(r.warned).toBe(true);
    // The leader and the other follower are a quorum: writes go on.
    expect(r.stallMs).toBeLessThan(2_000);
    expect(r.caughtUpMs).toBeDefined();
    expect(r.caughtUpMs!).toBeLessThan(5_000);
    expect(r.check.ok).toBe(true);
    expect(r.diverged).toEqual([]);
    expect(r.restarted).toBe(true);
  }, 180_000);

  it('is able to fail: a log that dies with a full disk never catches up when space returns', async () => {
    const r = await runDiskFull({ ...opts, bugs: 'walDiesWhenFull' });
    console.log(`with BLIXARD_TEST_BUGS=walDiesWhenFull: caught up ${r.caughtUpMs ?? 'never'}; ${r.check.ok ? 'linearizable' : 'NOT linearizable'}`);
    expect(r.caughtUpMs).toBeUndefined();
  }, 180_000);
});
