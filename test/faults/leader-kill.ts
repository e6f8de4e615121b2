import { checkHistory, type CheckResult, type Operation } from '../raft-sim/linearizability.js';
import { startFaultCluster } from './cluster.js';
import { finalReads, firstAckAfter, runWorkload, stallAfter, type WorkloadResult } from './workload.js';

// The leader SIGKILLed again and again under a client load (issue 17): how long no write is
// acknowledged after each kill, whether the history stays linearizable, and whether any
// acknowledged write is lost. The killed node comes back from its data dir a moment later, so
// that each kill meets a full cluster.

export interface LeaderKillOptions {
  kills: number;
  everyMs: number;
  clients: number;
  keys: number;
  /** Each call's budget, retries included (the CLI's --timeout). */
  timeoutMs: number;
  /** How long after a kill the node is started again. */
  restartAfterMs?: number;
  /** BLIXARD_TEST_BUGS for the nodes: a mistake the run must catch. */
  bugs?: string;
  log?: (line: string) => void;
}

export interface LeaderKillReport {
  /** Per kill: ms from the SIGKILL to the next acknowledged write (undefined: none came). */
  firstAck: (number | undefined)[];
  /** Per kill: the longest time without an acknowledged write in the 5 s after it. */
  stall: number[];
  /** Per kill: ms from the SIGKILL until a survivor said it leads. */
  elected: number[];
  workload: WorkloadResult;
  /** The operations checked: the workload's and the final reads. */
  history: Operation[];
  check: CheckResult;
  /** Nodes whose own replica still differed from the leader's after 30 s. */
  diverged: string[];
}

export async function runLeaderKills(o: LeaderKillOptions): Promise<LeaderKillReport> {
  const log = o.log ?? (() => {});
  const cluster = await startFaultCluster(3, o.bugs ? { bugs: o.bugs } : {});
  try {
    let stop!: () => void;
    const stopped = new Promise<void>((r) => (stop = r));
    const load = runWorkload({ servers: () => cluster.servers(), clients: o.clients, keys: o.keys, timeoutMs: o.timeoutMs }, stopped);
    const kills: number[] = [];
    const elected: number[] = [];
    const restarts: Promise<unknown>[] = [];
    try {
      for (let k = 0; k < o.kills; k++) {
        await new Promise((r) => setTimeout(r, o.everyMs));
        const idx = await cluster.leader();
        if (idx < 0) throw new Error(`no leader before kill ${k + 1}`);
        const t0 = Date.now();
        await cluster.nodes[idx]!.kill();
        kills.push(t0);
        const rest = cluster.nodes.map((_, i) => i).filter((i) => i !== idx);
        for (;;) {
          if ((await cluster.leader(rest)) >= 0) break;
          if (Date.now() - t0 > 30_000) throw new Error(`no new leader within 30 s of kill ${k + 1}`);
          await new Promise((r) => setTimeout(r, 20));
        }
        elected.push(Date.now() - t0);
        log(`kill ${k + 1}/${o.kills}: node ${idx + 1} SIGKILLed, a new leader after ${elected.at(-1)} ms`);
        const again = new Promise((r) => setTimeout(r, o.restartAfterMs ?? 2000)).then(() => cluster.restart(idx));
        restarts.push(again);
        await again;
      }
      await new Promise((r) => setTimeout(r, Math.min(o.everyMs, 3000)));
    } finally {
      stop();
      await Promise.allSettled(restarts);
    }
    const workload = await load;
    const history = [...workload.ops];
    await finalReads(cluster.servers(), o.keys, history);
    const check = checkHistory(history);
    // Every node's own replica converges on what the leader serves.
    const diverged: string[] = [];
    const want = JSON.stringify(await labelsOf(cluster.nodes[0]!.client, false));
    for (const d of cluster.nodes) {
      const end = Date.now() + 30_000;
      let have = '';
      while (Date.now() < end && (have = JSON.stringify(await labelsOf(d.client, true))) !== want) await new Promise((r) => setTimeout(r, 200));
      if (have !== want) diverged.push(`${d.nodeId.slice(0, 10)}: ${have} (the leader: ${want})`);
    }
    return { firstAck: firstAckAfter(kills, workload.acks), stall: stallAfter(kills, workload.acks, 5000), elected, workload, history, check, diverged };
  } finally {
    await cluster.stop();
  }
}

async function labelsOf(client: { list: (kind: 'Image', o: { local?: boolean }) => Promise<{ metadata: { name: string; labels: Record<string, string> } }[]> }, local: boolean): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const r of (await client.list('Image', { local })).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))) out[r.metadata.name] = r.metadata.labels.v ?? '';
  return out;
}

/** The p-th percentile (0-100) of some numbers, nearest rank. */
export function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
