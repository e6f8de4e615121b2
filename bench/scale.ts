import { setMaxListeners } from 'node:events';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { ApplyRequest } from '../src/api/index.js';
import { removeDir, startDaemon, tempDir, type Daemon } from '../test/helpers/daemon.js';
import { pct, type Row } from './table.js';

// The scale curve (issue 17): 3, 10 and 20 node processes on this machine (3 voters, the rest
// workers, all on loopback). For each size: how long a write takes to be seen by every node
// through the cluster document (each node's own watch stream says when), how long a fresh
// worker takes to sync 10,000 entries, and CPU and RSS per node, idle and under the fan-out.

const HASH = `blake3:${'f'.repeat(64)}`;
const image = (name: string, labels: Record<string, string>) => ({ kind: 'Image' as const, name, labels, spec: { blob: HASH, format: 'raw' }, source: { hash: HASH, size: null } });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** CPU ticks (user + system) and RSS (KiB) of a process. */
function usage(pid: number): { ticks: number; rssKiB: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const rss = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return { ticks: Number(stat[11]) + Number(stat[12]), rssKiB: Number(rss ?? 0) };
}

/** Mean CPU % per process over `ms`, and each one's RSS at the end (MiB). */
async function measure(pids: number[], ms: number, during?: Promise<unknown>): Promise<{ cpu: number[]; rssMiB: number[] }> {
  const a = pids.map((p) => usage(p).ticks);
  const t0 = performance.now();
  await Promise.all([sleep(ms), during]);
  const secs = (performance.now() - t0) / 1000;
  const b = pids.map(usage);
  return { cpu: b.map((u, i) => (u.ticks - a[i]!) / secs), rssMiB: b.map((u) => u.rssKiB / 1024) };
}

/** Starts `size` nodes into `nodes` (so that the caller stops whatever started, should one fail). */
async function cluster(work: string, size: number, started: Daemon[]): Promise<Daemon[]> {
  const configHome = path.join(work, 'config');
  const start = async (i: number, args: string[]) => {
    const d = await startDaemon({ dataDir: path.join(work, `n${i + 1}`), configHome, args: [...args, '--name', `n${i + 1}`, '--hypervisor', 'process'], timeoutMs: 120_000 });
    started.push(d);
    return d;
  };
  const first = await start(0, ['--bootstrap']);
  const ticket = async (role: 'voter' | 'worker') => (await first.client.ticket({ role, ttlSeconds: 600 })).ticket;
  const voters = [first, ...(await Promise.all([1, 2].map(async (i) => start(i, ['--join', await ticket('voter'), '--role', 'voter']))))];
  const workers: Daemon[] = [];
  // Workers join a few at a time: 17 Iroh starts at once on 2 cores take minutes.
  for (let i = 3; i < size; i += 4) workers.push(...(await Promise.all(Array.from({ length: Math.min(4, size - i) }, async (_, k) => start(i + k, ['--join', await ticket('worker'), '--role', 'worker'])))));
  const nodes = [...voters, ...workers];
  const deadline = Date.now() + 120_000;
  while ((await first.client.nodes()).filter((n) => n.ready).length < size) {
    if (Date.now() > deadline) throw new Error(`${size} nodes: not all ready within 120 s`);
    await sleep(200);
  }
  return nodes;
}

/** Per write: ms from the apply call to the last node's watch event for it. */
async function fanOut(nodes: Daemon[], writes: number): Promise<number[]> {
  const seen = new Map<string, Map<number, number>>();
  const abort = new AbortController();
  setMaxListeners(0, abort.signal); // one watch per node listens on it
  let synced = 0;
  const watches = nodes.map((d, i) =>
    d.client
      .watch('Image', { selector: 'scale=fan', signal: abort.signal }, (e) => {
        if (e.type === 'SYNCED') return void synced++;
        if (e.type === 'DELETED') return;
        const by = seen.get(e.object.metadata.name) ?? new Map<number, number>();
        if (!by.has(i)) by.set(i, performance.now());
        seen.set(e.object.metadata.name, by);
      })
      .catch(() => {}),
  );
  while (synced < nodes.length) await sleep(20);
  const out: number[] = [];
  for (let w = 0; w < writes; w++) {
    const name = `fan-${w}`;
    const t0 = performance.now();
    await nodes[0]!.client.apply({ desired: [image(name, { scale: 'fan' })], applyset: `fan-${w}`, prune: false, maxPrune: 0, dryRun: false } as ApplyRequest);
    const end = Date.now() + 20_000;
    while ((seen.get(name)?.size ?? 0) < nodes.length && Date.now() < end) await sleep(2);
    const by = seen.get(name);
    out.push(by && by.size === nodes.length ? Math.max(...by.values()) - t0 : Infinity);
    await sleep(100);
  }
  abort.abort();
  await Promise.all(watches);
  return out;
}

/** ms from starting a fresh worker to its own view holding `count` Images. */
async function freshSync(work: string, leader: Daemon, index: number, count: number): Promise<number> {
  const t0 = performance.now();
  const ticket = (await leader.client.ticket({ role: 'worker', ttlSeconds: 600 })).ticket;
  const d = await startDaemon({ dataDir: path.join(work, `fresh${index}`), configHome: path.join(work, 'config'), args: ['--join', ticket, '--role', 'worker', '--name', `fresh${index}`, '--hypervisor', 'process'], timeoutMs: 120_000 });
  try {
    const end = Date.now() + 120_000;
    while ((await d.client.list('Image', { local: true })).length < count) {
      if (Date.now() > end) return Infinity;
      await sleep(100);
    }
    return performance.now() - t0;
  } finally {
    await d.stop();
  }
}

export async function scaleBench(sizes = (process.env.SCALE_SIZES ?? "3,10,20").split(",").map(Number)): Promise<Row[]> {
  const rows: Row[] = [];
  for (const size of sizes) {
    const work = await tempDir('blixard-scale-');
    const started: Daemon[] = [];
    try {
      const t0 = performance.now();
      const nodes = await cluster(work, size, started);
      const upMs = performance.now() - t0;
      const pids = nodes.map((d) => d.proc.pid!);
      await sleep(3000);
      const idle = await measure(pids, 5000);
      let lat: number[] = [];
      const busy = await measure(pids, 0, fanOut(nodes, 30).then((l) => (lat = l)));
      // 10,000 entries in the cluster document, then a worker that has seen none of them.
      for (let b = 0; b < 100; b++) {
        await nodes[0]!.client.apply({ desired: Array.from({ length: 100 }, (_, k) => image(`bulk-${b * 100 + k}`, { scale: 'bulk' })), applyset: `bulk-${b}`, prune: false, maxPrune: 0, dryRun: false } as ApplyRequest);
      }
      const syncMs = await freshSync(work, nodes[0]!, size, 10_000 + 30);
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      rows.push(
        { name: `${size} nodes (3 voters): all ready after`, value: upMs, unit: 'ms', target: '' },
        { name: `${size} nodes: a write to seen by every node, p50 (30 writes)`, value: pct(lat, 50), unit: 'ms', target: '' },
        { name: `${size} nodes: a write to seen by every node, p99`, value: pct(lat, 99), unit: 'ms', target: '' },
        { name: `${size} nodes: a fresh worker syncs 10,000 entries`, value: syncMs, unit: 'ms', target: '' },
        { name: `${size} nodes: CPU per node idle (mean; max)`, value: mean(idle.cpu), unit: `%; ${Math.max(...idle.cpu).toFixed(0)} %`, target: '' },
        { name: `${size} nodes: CPU per node during the fan-out (mean; max)`, value: mean(busy.cpu), unit: `%; ${Math.max(...busy.cpu).toFixed(0)} %`, target: '' },
        { name: `${size} nodes: RSS per node (mean; max)`, value: mean(idle.rssMiB), unit: `MiB; ${Math.max(...idle.rssMiB).toFixed(0)} MiB`, target: '' },
      );
      console.log(`scale: ${size} nodes measured`);
    } catch (e) {
      // One size that fails says why; the sizes measured stay in the table.
      console.error(`scale: ${size} nodes failed: ${(e as Error).stack ?? String(e)}`);
      rows.push({ name: `${size} nodes: FAILED (see the log above)`, value: NaN, unit: '', target: '' });
    } finally {
      await Promise.all(started.map((d) => d.stop().catch(() => d.kill())));
      await removeDir(work).catch((e: unknown) => console.error(`scale: could not remove ${work}: ${(e as Error).message}`));
    }
  }
  return rows;
}
