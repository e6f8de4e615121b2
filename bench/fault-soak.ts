import { pathToFileURL } from 'node:url';
import { runDiskFull } from '../test/faults/disk-full.js';
import { runLeaderFaults, saveHistory } from '../test/faults/leader-fault.js';
import { describePartition, runPartition, type PartitionFault } from '../test/faults/partition.js';
import { runTornWal } from '../test/faults/torn-wal.js';
import { pct, printTable, type Row } from './table.js';

// The long fault runs (`npm run soak` runs them after the Raft simulation soak), the long
// versions of test/faults (issue 17): the leader SIGKILLed every 12 s under 8 clients, 10 times
// per run; each network fault held for 20 s; six torn WAL tails; a follower's data dir full for
// 15 s. Prints tables, each target beside what bounds it on this machine (the time to elect a
// new leader), and fails when a history is not linearizable or an acknowledged write was lost.
//
//   node dist/bench/fault-soak.js [--runs 2] [--kills 10] [--every-ms 12000] [--clients 8]
//   npm run soak -- --faults      only these; --no-faults: only the simulation

export interface FaultSoakOptions {
  runs: number;
  kills: number;
  everyMs: number;
  clients: number;
}

export const FAULT_SOAK_DEFAULTS: FaultSoakOptions = { runs: 2, kills: 10, everyMs: 12_000, clients: 8 };

/** Runs the fault soak, prints its table; 0 when every run held, else 1. */
export async function faultSoak(o: FaultSoakOptions): Promise<number> {
  const { runs, kills, everyMs, clients } = o;
  const timeoutMs = 30_000;
  const elected: number[] = [];
  const stalls: number[] = [];
  const firstAcks: number[] = [];
  let ops = 0;
  let acked = 0;
  let slowest = 0;
  let bad = 0;
  for (let run = 1; run <= runs; run++) {
    const r = await runLeaderFaults({ fault: 'sigkill', kills, everyMs, clients, keys: 4, timeoutMs, log: (l) => console.log(`run ${run}/${runs}: ${l}`) });
    elected.push(...r.elected);
    stalls.push(...r.stall);
    firstAcks.push(...r.firstAck.map((x) => x ?? Infinity));
    ops += r.workload.ops.length;
    acked += r.workload.acks.length;
    slowest = Math.max(slowest, r.workload.slowestMs);
    const verdict = r.check.ok ? `linearizable (${r.check.ops} operations)` : `NOT linearizable on ${r.check.key} (${r.check.reason})`;
    console.log(`run ${run}/${runs}: ${verdict}; replicas ${r.diverged.length === 0 ? 'agree' : `differ: ${r.diverged.join('; ')}`}; refused ${r.workload.refused}, rejected ${r.workload.rejected}, unknown ${JSON.stringify(r.workload.failed)}`);
    if (!r.check.ok || r.diverged.length > 0) {
      bad++;
      const file = await saveHistory(r, 'fault-soak');
      console.log(`run ${run}/${runs}: the history is in ${file}`);
    }
  }
  const rows: Row[] = [
    { name: `leader SIGKILL to a new leader, p50 (${elected.length} kills; what bounds the rest)`, value: pct(elected, 50), unit: 'ms', target: 'floor' },
    { name: 'leader SIGKILL to a new leader, p99', value: pct(elected, 99), unit: 'ms', target: 'floor' },
    { name: 'SIGKILL to the first acknowledged write after it, p50', value: pct(firstAcks, 50), unit: 'ms', target: '-' },
    { name: 'SIGKILL to the first acknowledged write after it, p99', value: pct(firstAcks, 99), unit: 'ms', target: '<= 2500 ms' },
    { name: 'longest time without an acknowledged write after a kill, p99', value: pct(stalls, 99), unit: 'ms', target: '<= 2500 ms' },
    { name: `slowest call of ${ops} (${acked} writes acknowledged)`, value: slowest, unit: 'ms', target: `< ${timeoutMs} ms (--timeout)` },
    { name: 'runs not linearizable or with a lost write', value: bad, unit: `of ${runs}`, target: '0' },
  ];
  printTable(`Faults: the leader SIGKILLed every ${everyMs / 1000} s under ${clients} clients (issue 17)`, rows);
  return (bad > 0 ? 1 : 0) | (await otherFaults(clients));
}

/** The network and disk faults, long: one table; 1 when any run was not safe. */
async function otherFaults(clients: number): Promise<number> {
  const rows: Row[] = [];
  let bad = 0;
  const faults: [PartitionFault, number][] = [['isolate-leader', 3], ['isolate-follower', 3], ['split', 5], ['one-way', 3], ['flapping', 3], ['loss', 3]];
  for (const [fault, nodes] of faults) {
    const r = await runPartition({ fault, nodes, holdMs: 20_000, clients, keys: 4, timeoutMs: 5_000, retryMs: 0, lossPercent: 20, flapMs: 700, log: (l) => console.log(l) });
    console.log(describePartition(r));
    const ok = r.check.ok && r.diverged.length === 0;
    if (!ok) {
      bad++;
      console.log(`the history is in ${await saveHistory(r, `fault-soak-${fault}`)}`);
    }
    rows.push({ name: `${fault} (20 s, ${nodes} nodes): longest stall`, value: r.stallMs, unit: 'ms', target: ok ? 'linearizable' : 'NOT SAFE' });
    if (r.minority.length) rows.push({ name: `${fault}: longest call to a cut-off node`, value: r.minorityCallMs, unit: 'ms', target: '< 5000 ms (the call\'s deadline)' });
  }
  const torn = await runTornWal({ tears: ['half a record', 'half a header', 'zeroed block', 'half a record', 'half a header', 'zeroed block'], clients, keys: 4, timeoutMs: 30_000, log: (l) => console.log(l) });
  const tornOk = torn.check.ok && torn.diverged.length === 0 && torn.rounds.every((x) => x.again);
  if (!tornOk) bad++;
  rows.push({ name: `torn WAL tails: nodes that started again (twice each)`, value: torn.rounds.filter((x) => x.again).length, unit: `of ${torn.rounds.length}`, target: tornOk ? 'linearizable' : 'NOT SAFE' });
  const full = await runDiskFull({ holdMs: 15_000, clients, keys: 4, timeoutMs: 30_000, log: (l) => console.log(l) });
  const fullOk = full.check.ok && full.diverged.length === 0 && full.restarted && full.caughtUpMs !== undefined;
  if (!fullOk) bad++;
  rows.push({ name: 'follower data dir full 15 s: longest stall', value: full.stallMs, unit: 'ms', target: fullOk ? 'linearizable' : 'NOT SAFE' });
  rows.push({ name: 'follower data dir full: caught up after space returned', value: full.caughtUpMs ?? Infinity, unit: 'ms', target: '-' });
  printTable('Faults: the network and the disk (issue 17)', rows);
  return bad > 0 ? 1 : 0;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = (name: string, fallback: number): number => {
    const i = process.argv.indexOf(name);
    if (i < 0) return fallback;
    const n = Number(process.argv[i + 1]);
    if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name}: expected a positive integer, got ${process.argv[i + 1]}`);
    return n;
  };
  const d = FAULT_SOAK_DEFAULTS;
  process.exitCode = await faultSoak({ runs: arg('--runs', d.runs), kills: arg('--kills', d.kills), everyMs: arg('--every-ms', d.everyMs), clients: arg('--clients', d.clients) });
}
