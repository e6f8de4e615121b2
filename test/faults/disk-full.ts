import { open, unlink } from 'node:fs/promises';
import path from 'node:path';
import { startFaultCluster } from './cluster.js';
import { settle, type Verdict } from './verdict.js';
import { stallAfter, startWorkload, type WorkloadResult } from './workload.js';

// A follower whose data dir fills up (issue 17): its data dir is a small tmpfs; under the client
// load a file takes all of its free space for `holdMs`, then goes. Measured: whether the majority
// went on acknowledging, whether the follower said so, how soon it caught up once space
// returned, and, after it is killed and started again, whether its data dir still opens.

export interface DiskFullReport extends Verdict {
  workload: WorkloadResult;
  /** The longest time without an acknowledged write while the disk was full. */
  stallMs: number;
  /** The follower's log said its data dir was full. */
  warned: boolean;
  /** ms from space returning to the follower having applied what the leader had committed then (undefined: not within 15 s). */
  caughtUpMs: number | undefined;
  /** The follower started again from its data dir afterwards. */
  restarted: boolean;
  logs: { name: string; text: string }[];
}

export async function runDiskFull(o: { holdMs: number; clients: number; keys: number; timeoutMs: number; bugs?: string; log?: (l: string) => void }): Promise<DiskFullReport> {
  const log = o.log ?? (() => {});
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const victim = 2;
  const cluster = await startFaultCluster(3, { tmpfsMiB: (i) => (i === victim ? 96 : undefined), ...(o.bugs ? { bugs: o.bugs } : {}) });
  try {
    let stop!: () => void;
    const stopped = new Promise<void>((r) => (stop = r));
    const load = startWorkload({ servers: () => cluster.servers(), clients: o.clients, keys: o.keys, timeoutMs: o.timeoutMs }, stopped);
    let t0 = 0;
    let caughtUpMs: number | undefined;
    let warned = false;
    try {
      await sleep(2000);
      if ((await cluster.leader()) === victim) throw new Error('the node to fill leads; the test fills a follower');
      const dir = path.join(cluster.work, `n${victim + 1}`);
      const filler = path.join(dir, 'filler');
      const took = await fillUp(filler);
      t0 = Date.now();
      log(`n${victim + 1}: data dir full (${(took / 2 ** 20).toFixed(1)} MiB filler)`);
      await sleep(o.holdMs);
      warned = /the data dir is full/.test(cluster.nodes[victim]!.stderr());
      await unlink(filler);
      const spaceAt = Date.now();
      const target = (await cluster.nodes[(victim + 1) % 3]!.client.status()).raft.commitIndex;
      while (Date.now() - spaceAt < 15_000) {
        const s = await cluster.nodes[victim]!.client.status().catch(() => undefined);
        if (s && s.raft.appliedIndex >= target) {
          caughtUpMs = Date.now() - spaceAt;
          break;
        }
        await sleep(50);
      }
      log(`n${victim + 1}: space back; ${caughtUpMs === undefined ? 'not caught up within 15 s' : `caught up after ${caughtUpMs} ms`}`);
      await sleep(1000);
    } finally {
      stop();
    }
    const workload = await load.done;
    const verdict = await settle(cluster.nodes[victim] && caughtUpMs !== undefined ? cluster : { nodes: cluster.nodes.filter((_, i) => i !== victim) }, workload, o.keys);
    let restarted = false;
    await cluster.nodes[victim]!.kill();
    try {
      await cluster.restart(victim);
      restarted = true;
    } catch (e) {
      log(`n${victim + 1} did not start again: ${(e as Error).message}`);
    }
    return { workload, ...verdict, stallMs: stallAfter([t0], workload.acks, o.holdMs)[0]!, warned, caughtUpMs, restarted, logs: cluster.logs() };
  } finally {
    await cluster.stop();
  }
}

/** Writes `file` until the file system has no room left; returns how many bytes it took. */
async function fillUp(file: string): Promise<number> {
  const fh = await open(file, 'w');
  let size = 0;
  try {
    for (const chunk of [2 ** 20, 4096]) {
      const buf = Buffer.alloc(chunk);
      for (;;) {
        try {
          size += (await fh.write(buf, 0, chunk, size)).bytesWritten;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
          break;
        }
      }
    }
  } finally {
    await fh.close();
  }
  return size;
}
