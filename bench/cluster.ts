import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ApplyRequest, VmStatus } from '../src/api/index.js';
import type { VmSpec } from '../src/state/index.js';
import { ProcessDriver, driverRoot } from '../src/vm/index.js';
import { BIN, cli, removeDir, startDaemon, tempDir, testEnv, type Daemon } from '../test/helpers/daemon.js';
import { launchFloorBench } from './launch-floor.js';
import type { Row } from './table.js';

// Issue 7's numbers on a 3-node loopback cluster (2 voters, 1 worker): apply returning to all VMs
// Running for waves of 10 and 100 process VMs (target p50 < 1 s per wave, images cached), a
// node's death to its VMs Running elsewhere, and watch mode's edit-to-applied time (target < 2 s).

const TIMEOUTS = ['--node-timeout', '2s', '--fence-after', '3s'];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Polls until `done`; a bench that hangs measures nothing, so it fails saying what is stuck. */
async function waitFor(what: string, done: () => Promise<boolean>, stuck: () => Promise<string>, timeoutMs = 120_000, pollMs = 20): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > end) throw new Error(`cluster bench: timed out waiting for ${what}: ${await stuck()}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

// A wave's VMs carry the label app=<wave>, so a watch (or, for diagnostics, a list) selects only
// them, not every VM the cluster holds. What of `names` is not Running, as `d` sees it.
async function notRunning(d: Daemon, names: Set<string>, local = false, selector?: string): Promise<string[]> {
  const vms = await d.client.list('VirtualMachine', { local, ...(selector ? { selector } : {}) });
  return vms
    .filter((v) => names.has(v.metadata.name) && (v.status as VmStatus).phase !== 'Running')
    .map((v) => `${v.metadata.name}: ${(v.status as VmStatus).phase} on ${(v.status as VmStatus).nodeId?.slice(0, 8)} (${(v.status as VmStatus).message})`)
    .concat([...names].filter((n) => !vms.some((v) => v.metadata.name === n)).map((n) => `${n}: absent`));
}

export async function clusterBench(): Promise<Row[]> {
  const rows: Row[] = [];
  const work = await tempDir('blixard-cluster-bench-');
  const configHome = path.join(work, 'config');
  const nodes: Daemon[] = [];
  try {
    nodes.push(await startDaemon({ dataDir: path.join(work, 'v1'), configHome, args: ['--bootstrap', '--name', 'v1', '--hypervisor', 'process', '--vcpus', '512', ...TIMEOUTS] }));
    const v1 = nodes[0]!;
    nodes.push(await startDaemon({ dataDir: path.join(work, 'v2'), configHome, args: ['--join', (await v1.client.ticket({ role: 'voter', ttlSeconds: 600 })).ticket, '--name', 'v2', '--hypervisor', 'process', '--vcpus', '512', ...TIMEOUTS] }));
    nodes.push(await startDaemon({ dataDir: path.join(work, 'w1'), configHome, args: ['--join', (await v1.client.ticket({ role: 'worker', ttlSeconds: 600 })).ticket, '--name', 'w1', '--hypervisor', 'process', '--vcpus', '512', ...TIMEOUTS] }));
    const nodesNow = async () => await v1.client.nodes();
    await waitFor('3 ready nodes', async () => (await nodesNow()).filter((n) => n.ready).length === 3, async () => JSON.stringify(await nodesNow()), 60_000, 100);

    // The image, uploaded once and cached on every node by a first VM on each.
    const set = path.join(work, 'set');
    await mkdir(set, { recursive: true });
    await writeFile(path.join(set, 'app.sh'), '#!/bin/sh\necho READY\nexec sleep 100000\n', { mode: 0o755 });
    await writeFile(path.join(set, 'image.yaml'), 'apiVersion: blixard.dev/v1\nkind: Image\nmetadata: { name: app }\nspec: { path: ./app.sh, format: executable, readyPattern: READY }\n');
    cli(['--server', v1.api, '--token', v1.token, 'apply', '-f', set], { configHome });
    const wave = async (tag: string, n: number): Promise<number> => {
      const names = Array.from({ length: n }, (_, i) => `${tag}-${i}`);
      const req: ApplyRequest = { desired: names.map((name) => ({ kind: 'VirtualMachine' as const, name, labels: { app: tag }, spec: { image: 'app', memoryMiB: 8, placement: { spreadBy: 'app' } } })), applyset: tag, prune: false, maxPrune: 0, dryRun: false };
      await v1.client.apply(req);
      const t0 = performance.now();
      const want = new Set(names);
      const firsts = new Map<string, number>();
      // The leader's watch of the wave's VMs (what `blixard get vms -l app=<wave> -w` shows): each
      // change as it happens, with no list of all 100 built and sent every few milliseconds.
      const phases = new Map<string, VmStatus>();
      const track = (st: VmStatus, name: string) => {
        const now = performance.now() - t0;
        if (st.nodeId && !firsts.has(`placed:${name}`)) firsts.set(`placed:${name}`, now);
        if (st.phase !== 'Pending' && !firsts.has(`${st.phase}:${name}`)) firsts.set(`${st.phase}:${name}`, now);
      };
      const stop = new AbortController();
      let running = 0;
      let took = 0;
      const timeout = setTimeout(() => stop.abort(), 120_000);
      await v1.client.watch('VirtualMachine', { selector: `app=${tag}`, signal: stop.signal }, (e) => {
        if (e.type === 'SYNCED' || !want.has(e.object.metadata.name)) return;
        const st = e.object.status as VmStatus;
        if (e.type === 'DELETED') phases.delete(e.object.metadata.name);
        else phases.set(e.object.metadata.name, st);
        if (process.env.BENCH_DEBUG) track(st, e.object.metadata.name);
        running = [...phases.values()].filter((p) => p.phase === 'Running').length;
        if (running === want.size) {
          took = performance.now() - t0;
          stop.abort();
        }
      });
      clearTimeout(timeout);
      const stuck = async () => {
        // What each node's own replica says of them: a document that did not converge, or a
        // node really stuck.
        const views: string[] = [];
        const stuckOnLeader = (await notRunning(v1, want)).map((x) => x.split(':')[0]!).slice(0, 3);
        for (const d of nodes) {
          const stuck = await notRunning(d, want, true);
          views.push(`${d.nodeId.slice(0, 8)} sees: ${stuck.slice(0, 5).join('; ')}`);
          const names = stuck.map((x) => x.split(':')[0]!);
          views.push(...d.stderr().split('\n').filter((l) => names.some((n) => l.includes(`"${n}"`))).slice(-10));
          if (process.env.BENCH_DEBUG) {
            for (const n of stuckOnLeader) {
              const r = await fetch(`${d.api}/v1/debug/documents/status?prefix=${encodeURIComponent('status/')}`, { headers: { authorization: `Bearer ${d.token}` } });
              // Each entry is a record (batch or snapshot) of one node's map: what they say of n.
              const items = ((await r.json()) as { items: { key: string; author: string; timestamp: string; value: { entries?: [string, number, { phase?: string } | null][] } }[] }).items;
              const said = items.flatMap((i) => (i.value?.entries ?? []).filter(([k]) => k === `vm/${n}`).map(([, seq, v]) => ({ key: i.key.slice(7, 15), author: i.author.slice(0, 8), ts: i.timestamp, seq, phase: v?.phase ?? v })));
              views.push(`  doc records for ${n}: ${JSON.stringify(said)}`);
            }
            const m = await (await fetch(`${d.api}/metrics`, { headers: { authorization: `Bearer ${d.token}` } })).text();
            views.push(...m.split('\n').filter((l) => /^blixard_(p2p_doc|background)/.test(l) && !/bucket/.test(l)));
            views.push(...d.stderr().split("\n").filter((l) => /document|doc-|write-vm-status/.test(l)).slice(-10));
          }
        }
        return `${(await notRunning(v1, want)).slice(0, 5).join('; ')}\n${views.join('\n')}`;
      };
      if (running !== want.size) throw new Error(`cluster bench: timed out waiting for wave ${tag} Running: ${await stuck()}`);
      if (process.env.BENCH_DEBUG) {
        const byPhase = new Map<string, number[]>();
        for (const [k, t] of firsts) {
          const ph = k.split(':')[0]!;
          if (!byPhase.has(ph)) byPhase.set(ph, []);
          byPhase.get(ph)!.push(t);
        }
        const q = (xs: number[], f: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(f * xs.length))]!.toFixed(0);
        console.error(`${tag}: ${took.toFixed(0)} ms; ` + [...byPhase].map(([ph, xs]) => `${ph} n=${xs.length} first ${q(xs, 0)} p50 ${q(xs, 0.5)} last ${q(xs, 1)}`).join('; '));
      }
      return took;
    };
    await wave('warm', 3); // every node fetches the image once
    for (const n of [10, 100]) {
      const times: number[] = [];
      for (let i = 0; i < (n === 10 ? 5 : 3); i++) times.push(await wave(`w${n}-${i}`, n));
      rows.push({ name: `wave of ${n} process VMs on 3 nodes: apply returned to all Running (p50)`, value: median(times), unit: 'ms', target: '< 1000 ms' });
    }
    // The same 100 process chains with no daemon at all, on this machine, for reading the above.
    rows.push(...(await launchFloorBench(100)));

    // Watch mode: an edit to the file, until the cluster holds it.
    const watched = path.join(work, 'watched');
    await mkdir(watched, { recursive: true });
    const vmFile = (mem: number) => `apiVersion: blixard.dev/v1\nkind: VirtualMachine\nmetadata: { name: watched }\nspec: { image: app, memoryMiB: ${mem} }\n`;
    await writeFile(path.join(watched, 'vm.yaml'), vmFile(8));
    const watcher = spawn(process.execPath, [BIN, 'watch', '-f', watched, '--debounce', '100ms', '--server', v1.api, '--token', v1.token], { env: testEnv(configHome), stdio: 'ignore' });
    try {
      const memory = async () => ((await v1.client.get('VirtualMachine', 'watched').catch(() => undefined))?.spec as VmSpec | undefined)?.memoryMiB;
      await waitFor('the watched VM', async () => (await memory()) === 8, async () => `memoryMiB ${await memory()}`, 30_000);
      const edits: number[] = [];
      for (let i = 1; i <= 5; i++) {
        const t0 = performance.now();
        await writeFile(path.join(watched, 'vm.yaml'), vmFile(8 + i));
        await waitFor(`edit ${i} applied`, async () => (await memory()) === 8 + i, async () => `memoryMiB ${await memory()}`, 30_000, 10);
        edits.push(performance.now() - t0);
      }
      rows.push({ name: 'watch mode: edit saved to applied (p50 of 5, debounce 100 ms)', value: median(edits), unit: 'ms', target: '< 2000 ms' });
    } finally {
      watcher.kill('SIGTERM');
    }

    // A node's death: the worker and its VM processes are killed; its VMs run elsewhere after
    // --node-timeout plus --fence-after (2 s + 3 s here).
    const w1 = nodes[2]!;
    const onW1 = (await v1.client.list('VirtualMachine')).filter((v) => (v.status as VmStatus).nodeId === w1.nodeId).map((v) => v.metadata.name);
    await w1.kill();
    for (const o of await new ProcessDriver({ root: driverRoot(w1.dataDir, 'process') }).list()) if (o.pid) try { process.kill(o.pid, 'SIGKILL'); } catch { /* gone already */ }
    const t0 = performance.now();
    const want = new Set(onW1);
    const movedOff = async () => {
      const vs = await v1.client.list('VirtualMachine');
      return vs.filter((v) => want.has(v.metadata.name) && !((v.status as VmStatus).phase === 'Running' && (v.status as VmStatus).nodeId !== w1.nodeId));
    };
    await waitFor(`w1's VMs Running elsewhere`, async () => (await movedOff()).length === 0, async () => (await movedOff()).slice(0, 5).map((v) => `${v.metadata.name}: ${(v.status as VmStatus).phase} on ${(v.status as VmStatus).nodeId?.slice(0, 8)} (${(v.status as VmStatus).message})`).join('; '), 120_000, 50);
    rows.push({ name: `node death to its ${onW1.length} VMs Running elsewhere (timeout 2 s + fence 3 s)`, value: performance.now() - t0, unit: 'ms', target: '' });
  } finally {
    for (const d of nodes) await d.stop().catch(() => {});
    for (const n of ['v1', 'v2', 'w1']) {
      const drv = new ProcessDriver({ root: driverRoot(path.join(work, n), 'process') });
      for (const o of await drv.list().catch(() => [])) await drv.delete(o.name, 0).catch(() => {});
    }
    await removeDir(work);
  }
  return rows;
}
