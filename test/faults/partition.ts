import { startFaultCluster, type FaultCluster } from './cluster.js';
import { createNetLab } from '../helpers/netns.js';
import { settle, type Verdict } from './verdict.js';
import { imageKey, stallAfter, startWorkload, type Workload, type WorkloadResult } from './workload.js';

// Network faults between node processes in namespaces (issue 17), under a client load from the
// test's own namespace that reaches every node throughout: only node-to-node traffic is cut.
//   isolate-leader    the leader hears nobody and nobody hears it;
//   isolate-follower  the same for a follower (the majority keeps its leader);
//   split             the leader and one follower against the other three of five;
//   one-way           the leader hears nothing from one follower, which still hears it;
//   flapping          the leader's links go down and up every `flapMs`;
//   loss              every node drops `lossPercent` % of what its peers send it.
// While a side is cut off, each key is written through the other side's leader and then read
// through the cut-off nodes: a node there that answered from its own state would be caught.

export type PartitionFault = 'isolate-leader' | 'isolate-follower' | 'split' | 'one-way' | 'flapping' | 'loss';

export interface PartitionOptions {
  fault: PartitionFault;
  nodes: number;
  /** How long the fault lasts. */
  holdMs: number;
  clients: number;
  keys: number;
  /** Each call's budget, retries included (the CLI's --timeout). */
  timeoutMs: number;
  /** See WorkloadOptions.retryMs. */
  retryMs?: number;
  lossPercent?: number;
  flapMs?: number;
  /** BLIXARD_TEST_BUGS for the nodes: a mistake the run must catch. */
  bugs?: string;
  log?: (line: string) => void;
}

export interface PartitionReport extends Verdict {
  fault: PartitionFault;
  workload: WorkloadResult;
  /** The nodes cut off from the majority (empty when no side lost its quorum). */
  minority: number[];
  /** ms from the fault until a node of the majority said it leads (0: the leader never changed). */
  electedMs: number | undefined;
  /** The longest time without an acknowledged write while the fault lasted. */
  stallMs: number;
  /** The longest call to a cut-off node that started while the fault lasted. */
  minorityCallMs: number;
  logs: { name: string; text: string }[];
  rules: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runPartition(o: PartitionOptions): Promise<PartitionReport> {
  const log = o.log ?? (() => {});
  const lab = await createNetLab(o.nodes);
  let cluster: FaultCluster | undefined;
  try {
    cluster = await startFaultCluster(o.nodes, { prefix: (i) => ['ip', 'netns', 'exec', lab.ns(i)], host: (i) => lab.ip(i), ...(o.bugs ? { bugs: o.bugs } : {}) });
    const c = cluster;
    let stop!: () => void;
    const stopped = new Promise<void>((r) => (stop = r));
    const load = startWorkload({ servers: () => c.servers(), clients: o.clients, keys: o.keys, timeoutMs: o.timeoutMs, ...(o.retryMs !== undefined ? { retryMs: o.retryMs } : {}) }, stopped);
    let minority: number[] = [];
    let electedMs: number | undefined;
    let rules: string[] = [];
    let t0 = 0;
    let healedAt = 0;
    try {
      await sleep(2000);
      const leader = await c.leader();
      if (leader < 0) throw new Error('no leader before the fault');
      const all = c.nodes.map((_, i) => i);
      const followers = all.filter((i) => i !== leader);
      t0 = Date.now();
      let flapping: Promise<void> | undefined;
      switch (o.fault) {
        case 'isolate-leader':
          minority = [leader];
          await lab.isolate(leader);
          break;
        case 'isolate-follower':
          minority = [followers[0]!];
          await lab.isolate(followers[0]!);
          break;
        case 'split': {
          if (o.nodes < 5) throw new Error('a split needs 5 nodes');
          minority = [leader, followers[0]!];
          for (const a of minority) for (const b of all.filter((i) => !minority.includes(i))) await lab.cut(a, b);
          break;
        }
        case 'one-way':
          await lab.cut(leader, followers[0]!, 'a-hears-nothing-from-b');
          break;
        case 'flapping':
          flapping = (async () => {
            for (let down = true; Date.now() - t0 < o.holdMs; down = !down) {
              await (down ? lab.isolate(leader) : lab.heal());
              await sleep(o.flapMs ?? 700);
            }
          })();
          break;
        case 'loss':
          for (const i of all) await lab.loss(i, o.lossPercent ?? 20);
          break;
      }
      rules = await lab.rules();
      log(`${o.fault}: leader n${leader + 1}${minority.length ? `, cut off: ${minority.map((i) => `n${i + 1}`).join(', ')}` : ''}`);
      const majority = all.filter((i) => !minority.includes(i));
      if (minority.includes(leader)) {
        let next: number;
        while ((next = await c.leader(majority)) < 0) {
          if (Date.now() - t0 > 30_000) throw new Error(`no leader in the majority within 30 s of the ${o.fault}`);
          await sleep(20);
        }
        electedMs = Date.now() - t0;
        log(`${o.fault}: n${next + 1} leads the majority after ${electedMs} ms`);
      } else electedMs = 0;
      if (minority.length) await probeCutOff(load, minority, await c.leader(majority), o.keys);
      await flapping;
      await sleep(Math.max(0, o.holdMs - (Date.now() - t0)));
      await lab.heal();
      healedAt = Date.now();
      log(`${o.fault}: healed after ${healedAt - t0} ms`);
      await sleep(3000);
    } finally {
      stop();
    }
    const workload = await load.done;
    const verdict = await settle(c, workload, o.keys);
    const minorityCalls = workload.calls.filter((op) => minority.includes(op.node) && op.at >= t0 && op.at < healedAt && !op.client.startsWith('probe'));
    return {
      fault: o.fault,
      workload,
      ...verdict,
      minority,
      electedMs,
      stallMs: stallAfter([t0], workload.acks, healedAt - t0)[0]!,
      minorityCallMs: Math.max(0, ...minorityCalls.map((op) => op.tookMs ?? 0)),
      logs: c.logs(),
      rules,
    };
  } finally {
    await cluster?.stop();
    await lab.teardown();
  }
}

/**
 * Each key written through the majority's leader and, once acknowledged, read through every
 * cut-off node: those reads start after the writes ended, so an old value from them is stale.
 */
async function probeCutOff(load: Workload, minority: number[], leader: number, keys: number): Promise<void> {
  if (leader < 0) return;
  for (let k = 0; k < keys; k++) {
    const key = imageKey(k);
    const w = await load.call({ client: 'probe-w', node: leader, key, value: `probe.${k}` });
    if (!Number.isFinite(w.ret)) continue;
    for (const m of minority) void load.call({ client: `probe-r${m}.${k}`, node: m, key });
  }
}

/** One line for a test's output: the figures of a run. */
export function describePartition(r: PartitionReport): string {
  const w = r.workload;
  const verdict = r.check.ok ? 'linearizable' : `NOT linearizable on ${r.check.key} (${r.check.reason})`;
  return `${r.fault}: majority leader after ${r.electedMs ?? 'none'} ms; longest stall ${r.stallMs} ms; longest call to a cut-off node ${r.minorityCallMs} ms; ${w.acks.length} writes acknowledged, ${w.ops.length} operations; refused ${w.refused}, rejected (conflict) ${w.rejected}, unknown ${JSON.stringify(w.failed)}; slowest call ${w.slowestMs} ms; ${verdict}${r.diverged.length ? `; diverged: ${r.diverged.join('; ')}` : ''}`;
}

