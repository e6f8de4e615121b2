import { startFaultCluster } from './cluster.js';
import { settle, type Verdict } from './verdict.js';

export { saveHistory } from './verdict.js';
import { firstAckAfter, imageKey, stallAfter, startWorkload, type Workload, type WorkloadResult } from './workload.js';

// The leader hit again and again under a client load (issue 17): SIGKILLed (it comes back from
// its data dir a moment later, so that each kill meets a full cluster), or paused with SIGSTOP
// for longer than an election timeout (then continued: it wakes up deposed, with requests it took
// before the pause still to answer). Measured: how long no write is acknowledged after each
// fault, whether the history stays linearizable, and whether any acknowledged write is lost.

export interface LeaderFaultOptions {
  fault: 'sigkill' | 'sigstop';
  /** How many times the leader is hit. */
  kills: number;
  everyMs: number;
  clients: number;
  keys: number;
  /** Each call's budget, retries included (the CLI's --timeout). */
  timeoutMs: number;
  /** sigkill: how long after the kill the node is started again; sigstop: how long it stays
   * paused once a new leader is known. */
  restartAfterMs?: number;
  /** BLIXARD_TEST_BUGS for the nodes: a mistake the run must catch. */
  bugs?: string;
  log?: (line: string) => void;
}

export interface LeaderFaultReport extends Verdict {
  /** Per fault: ms from it to the next acknowledged write (undefined: none came). */
  firstAck: (number | undefined)[];
  /** Per fault: the longest time without an acknowledged write in the 5 s after it. */
  stall: number[];
  /** Per fault: ms from it until another node said it leads. */
  elected: number[];
  workload: WorkloadResult;
  /** Each node process's stderr. */
  logs: { name: string; text: string }[];
  /** Each fault: when (wall clock), which node (index), who led next, and after how long. */
  faults: { at: number; node: number; next: number; electedMs: number }[];
}

export async function runLeaderFaults(o: LeaderFaultOptions): Promise<LeaderFaultReport> {
  const log = o.log ?? (() => {});
  const cluster = await startFaultCluster(3, o.bugs ? { bugs: o.bugs } : {});
  try {
    let stop!: () => void;
    const stopped = new Promise<void>((r) => (stop = r));
    const load = startWorkload({ servers: () => cluster.servers(), clients: o.clients, keys: o.keys, timeoutMs: o.timeoutMs }, stopped);
    const faults: LeaderFaultReport['faults'] = [];
    const restarts: Promise<unknown>[] = [];
    try {
      for (let k = 0; k < o.kills; k++) {
        await new Promise((r) => setTimeout(r, o.everyMs));
        const idx = await cluster.leader();
        if (idx < 0) throw new Error(`no leader before ${o.fault} ${k + 1}`);
        const t0 = Date.now();
        const victim = cluster.nodes[idx]!;
        if (o.fault === 'sigkill') await victim.kill();
        else victim.proc.kill('SIGSTOP');
        const rest = cluster.nodes.map((_, i) => i).filter((i) => i !== idx);
        let next: number;
        while ((next = await cluster.leader(rest)) < 0) {
          if (Date.now() - t0 > 30_000) throw new Error(`no new leader within 30 s of ${o.fault} ${k + 1}`);
          await new Promise((r) => setTimeout(r, 20));
        }
        faults.push({ at: t0, node: idx, next, electedMs: Date.now() - t0 });
        log(`${o.fault} ${k + 1}/${o.kills}: node ${idx + 1}, a new leader after ${faults.at(-1)!.electedMs} ms`);
        if (o.fault === 'sigstop') await probeDeposed(load, idx, next, o.keys, k);
        const again = new Promise((r) => setTimeout(r, o.restartAfterMs ?? 2000)).then(async () => {
          if (o.fault === 'sigkill') await cluster.restart(idx);
          else victim.proc.kill('SIGCONT');
        });
        restarts.push(again);
        await again;
      }
      await new Promise((r) => setTimeout(r, Math.min(o.everyMs, 3000)));
    } finally {
      stop();
      await Promise.allSettled(restarts);
    }
    const workload = await load.done;
    const kills = faults.map((f) => f.at);
    return { firstAck: firstAckAfter(kills, workload.acks), stall: stallAfter(kills, workload.acks, 5000), elected: faults.map((f) => f.electedMs), workload, ...(await settle(cluster, workload, o.keys)), logs: cluster.logs(), faults };
  } finally {
    await cluster.stop();
  }
}

/**
 * While the deposed leader sleeps: each key written through the new leader and, once that is
 * acknowledged, read through the sleeper. Those reads start after the writes ended, so an answer
 * from the sleeper's old state when it wakes is a stale read the checker must catch. The random
 * clients alone rarely make this happen: by the time a new leader is elected, most of them wait
 * on the sleeper.
 */
async function probeDeposed(load: Workload, sleeper: number, leader: number, keys: number, round: number): Promise<void> {
  for (let k = 0; k < keys; k++) {
    const key = imageKey(k);
    const w = await load.call({ client: `probe-w${round}`, node: leader, key, value: `probe.${round}.${k}` });
    if (Number.isFinite(w.ret)) void load.call({ client: `probe-r${round}.${k}`, node: sleeper, key });
  }
}

/** One line for a test's output: the figures of a run. */
export function describeReport(r: LeaderFaultReport): string {
  const ms = (xs: (number | undefined)[]) => xs.map((x) => (x === undefined ? 'none' : `${x} ms`)).join(', ');
  const w = r.workload;
  const verdict = r.check.ok ? 'linearizable' : `NOT linearizable on ${r.check.key} (${r.check.reason})`;
  return `new leader after ${ms(r.elected)}; first acknowledged write after ${ms(r.firstAck)}; longest stall ${ms(r.stall)}; ${w.acks.length} writes acknowledged, ${w.ops.length} operations; refused ${w.refused}, rejected (conflict) ${w.rejected}, unknown ${JSON.stringify(w.failed)}; slowest call ${w.slowestMs} ms; ${verdict}`;
}
