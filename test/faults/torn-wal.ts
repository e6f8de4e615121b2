import { randomBytes } from 'node:crypto';
import { appendFile, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Wal } from '../../src/raft/index.js';
import { startFaultCluster } from './cluster.js';
import { settle, type Verdict } from './verdict.js';
import { startWorkload, type WorkloadResult } from './workload.js';

// A WAL whose tail was torn while its node was down (issue 17): under the client load, a node
// is SIGKILLed, and the end of its last WAL segment gets what an append interrupted by a crash
// leaves there; the node is started again. It must cut that tail off, catch up and serve; then,
// killed and started once more, read back what it wrote after the cut. An interrupted append was
// never acknowledged, so nothing acknowledged is lost and the history stays linearizable.

/** What an interrupted append can leave at the end of a segment. */
export type Tear = 'half a header' | 'half a record' | 'zeroed block';

export interface TornWalReport extends Verdict {
  workload: WorkloadResult;
  /** Per round: the node, the tear, and whether it started again both times (and why not). */
  rounds: { node: number; tear: Tear; restarted: boolean; again: boolean; error?: string }[];
  logs: { name: string; text: string }[];
}

/** A real WAL record (a few hundred random bytes), as the bytes an append writes. */
async function oneRecord(): Promise<Buffer> {
  const dir = path.join(os.tmpdir(), `blixard-torn-${process.pid}-${Date.now()}`);
  try {
    const { wal } = await Wal.open(dir);
    await wal.append(randomBytes(300));
    await wal.close();
    const [file] = (await readdir(dir)).filter((f) => f.endsWith('.wal'));
    return await readFile(path.join(dir, file!));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function tear(walDir: string, how: Tear): Promise<void> {
  const last = (await readdir(walDir)).filter((f) => f.endsWith('.wal')).sort().at(-1);
  if (!last) throw new Error(`no WAL segment in ${walDir}`);
  const record = await oneRecord();
  const bytes = how === 'half a header' ? record.subarray(0, 6) : how === 'half a record' ? record.subarray(0, Math.floor(record.length / 2)) : Buffer.alloc(4096);
  await appendFile(path.join(walDir, last), bytes);
}

export async function runTornWal(o: { tears: Tear[]; clients: number; keys: number; timeoutMs: number; bugs?: string; log?: (l: string) => void }): Promise<TornWalReport> {
  const log = o.log ?? (() => {});
  const cluster = await startFaultCluster(3, o.bugs ? { bugs: o.bugs } : {});
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  try {
    let stop!: () => void;
    const stopped = new Promise<void>((r) => (stop = r));
    const load = startWorkload({ servers: () => cluster.servers(), clients: o.clients, keys: o.keys, timeoutMs: o.timeoutMs }, stopped);
    const rounds: TornWalReport['rounds'] = [];
    try {
      for (const [k, how] of o.tears.entries()) {
        await sleep(1500);
        // The leader first (its WAL takes every write first), then followers.
        const leader = await cluster.leader();
        const idx = k === 0 && leader >= 0 ? leader : (k % 3);
        const round: TornWalReport['rounds'][number] = { node: idx, tear: how, restarted: false, again: false };
        rounds.push(round);
        await cluster.nodes[idx]!.kill();
        await tear(path.join(cluster.work, `n${idx + 1}`, 'state', 'raft', 'wal'), how);
        try {
          await cluster.restart(idx);
          round.restarted = true;
          await sleep(1500); // it takes part, and appends after the cut
          await cluster.nodes[idx]!.kill();
          await cluster.restart(idx);
          round.again = true;
        } catch (e) {
          round.error = (e as Error).message;
          log(`round ${k + 1}: n${idx + 1} (${how}): ${round.error}`);
          break;
        }
        log(`round ${k + 1}: n${idx + 1}, ${how}: started again twice`);
      }
      await sleep(1500);
    } finally {
      stop();
    }
    const workload = await load.done;
    const failed = rounds.some((r) => !r.again);
    // A node that cannot start any more leaves two: they still answer, and converge.
    const verdict = await settle({ nodes: cluster.nodes.filter((_, i) => !failed || rounds.every((r) => r.again || r.node !== i)) }, workload, o.keys);
    return { workload, ...verdict, rounds, logs: cluster.logs() };
  } finally {
    await cluster.stop();
  }
}
