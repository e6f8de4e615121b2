import { describe, expect, it } from 'vitest';
import { describeOps } from '../raft-sim/linearizability.js';
import { runTornWal } from './torn-wal.js';
import { saveHistory } from './verdict.js';

// A node SIGKILLed under 8 clients, its WAL's tail torn while it is down (three shapes of an
// interrupted append), started again, then killed and started once more.

const opts = { tears: ['half a record', 'half a header', 'zeroed block'] as const, clients: 8, keys: 4, timeoutMs: 30_000 };

describe('a WAL whose tail was torn while its node was down', () => {
  it('is cut at the last whole record; the node catches up, serves, and reads back what it wrote after', async () => {
    const r = await runTornWal({ ...opts, tears: [...opts.tears], log: (l) => console.log(l) });
    const w = r.workload;
    console.log(`${w.acks.length} writes acknowledged, ${w.ops.length} operations; unknown ${JSON.stringify(w.failed)}; slowest call ${w.slowestMs} ms; ${r.check.ok ? 'linearizable' : 'NOT linearizable'}`);
    if (!r.check.ok) console.log(`the history is in ${await saveHistory(r, 'torn-wal')}:\n${describeOps(r.check.ops)}`);
    expect(r.rounds.map((x) => [x.restarted, x.again, x.error])).toEqual(opts.tears.map(() => [true, true, undefined]));
    expect(r.check.ok).toBe(true);
    expect(r.diverged).toEqual([]);
    // Each restart said what it cut.
    const warned = r.logs.filter((l) => /truncating \d+ bytes of an interrupted \(never acknowledged\) write/.test(l.text));
    expect(warned.length).toBeGreaterThanOrEqual(opts.tears.length);
  }, 180_000);

  it('is able to fail: a WAL that leaves a torn tail in place and appends after it is caught at the next start', async () => {
    const r = await runTornWal({ ...opts, tears: ['half a record'], bugs: 'walKeepTornTail' });
    console.log(`with BLIXARD_TEST_BUGS=walKeepTornTail: ${JSON.stringify(r.rounds)}`);
    expect(r.rounds[0]).toMatchObject({ restarted: true, again: false, error: expect.stringMatching(/refusing to start: WAL record at .* has a bad/) });
  }, 180_000);
});
