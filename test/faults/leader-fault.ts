import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { checkHistory, type CheckResult, type Operation } from '../raft-sim/linearizability.js';
import { startFaultCluster } from './cluster.js';
import { finalReads, firstAckAfter, runWorkload, stallAfter, type WorkloadResult } from './workload.js';

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

export interface LeaderFaultReport {
  /** Per fault: ms from it to the next acknowledged write (undefined: none came). */
  firstAck: (number | undefined)[];
  /** Per fault: the longest time without an acknowledged write in the 5 s after it. */
  stall: number[];
  /** Per fault: ms from it until another node said it leads. */
  elected: number[];
  workload: WorkloadResult;
  /** The operations checked: the workload's and the final reads. */
  history: Operation[];
  check: CheckResult;
  /** Nodes whose own replica still differed from the leader's after 30 s. */
  diverged: string[];
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
    const load = runWorkload({ servers: () => cluster.servers(), clients: o.clients, keys: o.keys, timeoutMs: o.timeoutMs }, stopped);
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
    const kills = faults.map((f) => f.at);
    return { firstAck: firstAckAfter(kills, workload.acks), stall: stallAfter(kills, workload.acks, 5000), elected: faults.map((f) => f.electedMs), workload, history, check, diverged, logs: cluster.logs(), faults };
  } finally {
    await cluster.stop();
  }
}

async function labelsOf(client: { list: (kind: 'Image', o: { local?: boolean }) => Promise<{ metadata: { name: string; labels: Record<string, string> } }[]> }, local: boolean): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const r of (await client.list('Image', { local })).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))) out[r.metadata.name] = r.metadata.labels.v ?? '';
  return out;
}

/** One line for a test's output: the figures of a run. */
export function describeReport(r: LeaderFaultReport): string {
  const ms = (xs: (number | undefined)[]) => xs.map((x) => (x === undefined ? 'none' : `${x} ms`)).join(', ');
  const w = r.workload;
  const verdict = r.check.ok ? 'linearizable' : `NOT linearizable on ${r.check.key} (${r.check.reason})`;
  return `new leader after ${ms(r.elected)}; first acknowledged write after ${ms(r.firstAck)}; longest stall ${ms(r.stall)}; ${w.acks.length} writes acknowledged, ${w.ops.length} operations; refused ${w.refused}, rejected (conflict) ${w.rejected}, unknown ${JSON.stringify(w.failed)}; slowest call ${w.slowestMs} ms; ${verdict}`;
}

/** Writes the checked history to a file (to replay the checker on it), and returns its path. */
export async function saveHistory(r: LeaderFaultReport, name: string): Promise<string> {
  const file = path.join(os.tmpdir(), `blixard-${name}-${Date.now()}.json`);
  const plain = (ops: Operation[]) => ops.map((op) => ({ ...op, ret: Number.isFinite(op.ret) ? op.ret : null }));
  await writeFile(file, JSON.stringify({ history: plain(r.history), dropped: plain(r.workload.dropped), faults: r.faults, logs: r.logs }));
  return file;
}
