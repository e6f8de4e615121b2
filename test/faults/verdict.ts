import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { checkHistory, type CheckResult, type Operation } from '../raft-sim/linearizability.js';
import type { FaultCluster } from './cluster.js';
import { finalReads, type WorkloadResult } from './workload.js';

// What every fault run ends with, once its faults healed: each key read through every node, the
// whole history checked for linearizability (an acknowledged write that was lost shows there as a
// final read the checker cannot place), and every node's own replica compared with the leader's.

export interface Verdict {
  /** The operations checked: the workload's and the final reads. */
  history: Operation[];
  check: CheckResult;
  /** Nodes whose own replica still differed from the leader's after 30 s. */
  diverged: string[];
}

export async function settle(cluster: Pick<FaultCluster, 'nodes'>, workload: WorkloadResult, keys: number): Promise<Verdict> {
  const history: Operation[] = [...workload.ops];
  await finalReads(cluster.nodes.map((d) => ({ api: d.api, token: d.token })), keys, history);
  const check = checkHistory(history);
  const diverged: string[] = [];
  const want = JSON.stringify(await labelsOf(cluster.nodes[0]!.client, false));
  for (const d of cluster.nodes) {
    const end = Date.now() + 30_000;
    let have = '';
    while (Date.now() < end && (have = JSON.stringify(await labelsOf(d.client, true))) !== want) await new Promise((r) => setTimeout(r, 200));
    if (have !== want) diverged.push(`${d.nodeId.slice(0, 10)}: ${have} (the leader: ${want})`);
  }
  return { history, check, diverged };
}

async function labelsOf(client: { list: (kind: 'Image', o: { local?: boolean }) => Promise<{ metadata: { name: string; labels: Record<string, string> } }[]> }, local: boolean): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const r of (await client.list('Image', { local })).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))) out[r.metadata.name] = r.metadata.labels.v ?? '';
  return out;
}

/** Writes a run's checked history and records to a file (to replay the checker on), and returns its path. */
export async function saveHistory(r: Verdict & { workload: WorkloadResult; logs: unknown; faults?: unknown; rules?: unknown }, name: string): Promise<string> {
  const file = path.join(os.tmpdir(), `blixard-${name}-${Date.now()}.json`);
  const plain = (ops: Operation[]) => ops.map((op) => ({ ...op, ret: Number.isFinite(op.ret) ? op.ret : null }));
  await writeFile(file, JSON.stringify({ history: plain(r.history), dropped: plain(r.workload.dropped), faults: r.faults, rules: r.rules, logs: r.logs }));
  return file;
}
