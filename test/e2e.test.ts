import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApplyRequest, ResourceJson, VmStatus } from '../src/api/index.js';
import type { VmSpec } from '../src/state/index.js';
import { ProcessDriver, QemuDriver, driverRoot, type VmObservation } from '../src/vm/index.js';
import { BIN, ROOT, cli, removeDir, removeVms, startDaemon, tempDir, testEnv, type Daemon } from './helpers/daemon.js';
import { createNetLab, type NetLab } from './helpers/netns.js';
import { until } from './helpers/until.js';

// The walkthrough of examples/README.md, for real (issue 7): three processes, each in its own
// network namespace on one bridge: two voters (one bootstraps, one joins by ticket) and a worker
// (joins by ticket). Process VMs and a QEMU VM land by placement rules; watch mode applies an edit
// and refuses a bad one; an injected drift is reported and healed; drain empties a node; a node
// that is only cut off fences itself before its VMs start elsewhere; a killed node's VMs move; a
// killed leader loses no acknowledged apply. A VM never runs on two nodes at once.

const NODE_TIMEOUT = '2s';
const FENCE_AFTER = '3s';

let work: string;
let lab: NetLab;
const nodes: Record<'v1' | 'v2' | 'w1', Daemon> = {} as never;
const labNode = { v1: 0, v2: 1, w1: 2 } as const;
const configHome = () => path.join(work, 'config');
const dataDir = (n: string) => path.join(work, n);
let watcher: ChildProcess | undefined;

const WAIT_MS = 60_000;

async function start(name: 'v1' | 'v2' | 'w1', args: string[]): Promise<Daemon> {
  const n = labNode[name];
  return startDaemon({
    dataDir: dataDir(name),
    configHome: configHome(),
    prefix: lab.exec(n),
    api: `${lab.ip(n)}:7400`,
    args: [...args, '--name', name, '--listen', `${lab.ip(n)}:0`, '--node-timeout', NODE_TIMEOUT, '--fence-after', FENCE_AFTER, '--vcpus', '32'],
    timeoutMs: 60_000,
  });
}

/** A client on some node that answers (any node forwards to the leader). */
async function anyClient() {
  for (const n of Object.values(nodes)) if (await n.client.version().then(() => true, () => false)) return n.client;
  throw new Error('no node answers');
}

const vms = async () => (await (await anyClient()).list('VirtualMachine')) as (ResourceJson & { status: VmStatus })[];
const nodeOf = async (vm: string) => (await vms()).find((v) => v.metadata.name === vm)?.status.nodeId ?? null;
const running = (o: VmObservation) => o.state === 'running';

/** Every VM instance running anywhere right now, by name: never more than one per name. */
async function instances(): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const n of ['v1', 'v2', 'w1']) {
    for (const d of [new ProcessDriver({ root: driverRoot(dataDir(n), 'process') }), new QemuDriver({ root: driverRoot(dataDir(n), 'qemu') })]) {
      for (const o of await d.list().catch(() => [])) if (running(o)) out.set(o.name, [...(out.get(o.name) ?? []), n]);
    }
  }
  return out;
}

/** Samples every 100 ms while `fn` runs; fails if any VM ever ran on two nodes. */
async function neverTwice<T>(fn: () => Promise<T>): Promise<T> {
  let stop = false;
  const doubles: string[] = [];
  const sampler = (async () => {
    while (!stop) {
      for (const [vm, where] of await instances()) if (where.length > 1) doubles.push(`${vm} on ${where.join(' and ')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  try {
    return await fn();
  } finally {
    stop = true;
    await sampler;
    expect(doubles).toEqual([]);
  }
}

const manifestsDir = () => path.join(work, 'manifests');
async function writeManifests(extra = ''): Promise<void> {
  const dir = manifestsDir();
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'app.sh'), '#!/bin/sh\necho APP-READY\nexec sleep 100000\n', { mode: 0o755 });
  const out = path.join(ROOT, 'examples', 'tiny-linux', 'out');
  const vm = (name: string, spec: string) => `---\napiVersion: blixard.dev/v1\nkind: VirtualMachine\nmetadata: { name: ${name}, labels: { app: ${name.replace(/-\d+$/, '')} } }\nspec:\n  image: app\n  memoryMiB: 32\n${spec}`;
  await writeFile(
    path.join(dir, 'set.yaml'),
    [
      'apiVersion: blixard.dev/v1\nkind: Image\nmetadata: { name: app }\nspec: { path: ./app.sh, format: executable, readyPattern: APP-READY }\n',
      `---\napiVersion: blixard.dev/v1\nkind: Image\nmetadata: { name: tiny }\nspec: { path: ${out}/vmlinuz, initrd: ${out}/initrd.img, format: kernel, readyPattern: BLIXARD-GUEST-READY }\n`,
      vm('pinned-a', '  placement: { nodeSelector: { zone: a } }\n'),
      vm('pinned-b', '  placement: { nodeSelector: { zone: b } }\n'),
      vm('spread-1', '  placement: { spreadBy: app }\n'),
      vm('spread-2', '  placement: { spreadBy: app }\n'),
      vm('spread-3', '  placement: { spreadBy: app }\n'),
      '---\napiVersion: blixard.dev/v1\nkind: VirtualMachine\nmetadata: { name: guest }\nspec: { image: tiny, memoryMiB: 192, kernelArgs: console=ttyS0, placement: { nodeSelector: { zone: c } } }\n',
      extra,
    ].join(''),
  );
}

beforeAll(async () => {
  work = await tempDir();
  execFileSync('sh', [path.join(ROOT, 'examples', 'tiny-linux', 'build.sh')], { stdio: 'ignore', timeout: 300_000 });
  lab = await createNetLab(3);
  nodes.v1 = await start('v1', ['--bootstrap', '--labels', 'zone=a', '--hypervisor', 'process']);
  const voterTicket = (await nodes.v1.client.ticket({ role: 'voter', ttlSeconds: 3600 })).ticket;
  nodes.v2 = await start('v2', ['--join', voterTicket, '--labels', 'zone=b', '--hypervisor', 'process']);
  const workerTicket = (await nodes.v1.client.ticket({ role: 'worker', ttlSeconds: 3600 })).ticket;
  nodes.w1 = await start('w1', ['--join', workerTicket, '--labels', 'zone=c', '--hypervisor', 'qemu,process']);
  await until('two voters and three ready nodes', async () => {
    const s = await nodes.v1.client.status();
    return s.raft.members.filter((m) => m.role === 'voter').length === 2 && s.nodes.length === 3 && s.nodes.every((n) => n.ready);
  }, WAIT_MS);
}, 400_000);

afterAll(async () => {
  watcher?.kill('SIGTERM');
  for (const n of Object.values(nodes)) await n?.stop().catch(() => {});
  for (const n of ['v1', 'v2', 'w1']) await removeVms(dataDir(n));
  await lab?.teardown();
  await removeDir(work);
});

describe('the three-node walkthrough', () => {
  it('lands VMs per placement rules; the worker runs its VMs (a QEMU guest among them) from the documents', async () => {
    await writeManifests();
    const r = cli(['--server', nodes.v2.api, '--token', nodes.v2.token, 'apply', '-f', manifestsDir(), '--wait', '--timeout', '45s'], { configHome: configHome() });
    if (r.code !== 0) {
      const names = Object.fromEntries(Object.entries(nodes).map(([n, d]) => [d.nodeId, n]));
      console.log('APPLY', r.code, r.stdout, r.stderr, JSON.stringify((await vms()).map((v) => [v.metadata.name, v.status.phase, v.status.message, names[v.status.nodeId ?? ''] ?? v.status.nodeId])));
      for (const [n, d] of Object.entries(nodes)) console.log(`--- ${n} log (tail)\n${d.stderr().split('\n').slice(-60).join('\n')}`);
    }
    expect(r.stderr + r.stdout).not.toContain('error');
    expect(r.code).toBe(0);
    const where = Object.fromEntries((await vms()).map((v) => [v.metadata.name, v.status.nodeId]));
    expect(where['pinned-a']).toBe(nodes.v1.nodeId);
    expect(where['pinned-b']).toBe(nodes.v2.nodeId);
    expect(where.guest).toBe(nodes.w1.nodeId);
    expect(new Set([where['spread-1'], where['spread-2'], where['spread-3']]).size).toBe(3); // one per node
    expect((await instances()).get('guest')).toEqual(['w1']);
  }, 120_000);

  it('reports an injected drift with diff --actual, and the reconciler heals it', async () => {
    const on = await nodeOf('spread-1');
    const name = Object.entries(nodes).find(([, d]) => d.nodeId === on)![0];
    const drv = new ProcessDriver({ root: driverRoot(dataDir(name), 'process') });
    // Two quick deaths: a crash loop, restarted after a backoff during which it is visibly drifted.
    const first = (await drv.inspect('spread-1')).pid!;
    process.kill(first, 'SIGKILL');
    const again = await until('the first restart', async () => {
      const o = await drv.inspect('spread-1');
      return running(o) && o.pid && o.pid !== first ? o : undefined;
    }, WAIT_MS);
    process.kill(again.pid!, 'SIGKILL');
    const drift = await until('diff --actual to report it', async () => {
      const d = cli(['--server', nodes.v1.api, '--token', nodes.v1.token, 'diff', '--actual'], { configHome: configHome() });
      return d.code === 1 && d.stdout.includes('VirtualMachine/spread-1') ? d : undefined;
    }, 15_000);
    expect(drift.stdout).toMatch(/VirtualMachine\/spread-1: desired Running, observed \w+/);
    await until('healed', async () => cli(['--server', nodes.v1.api, '--token', nodes.v1.token, 'diff', '--actual'], { configHome: configHome() }).code === 0, WAIT_MS);

    // A VM gone from its node behind Blixard's back (its process and folder removed by hand): the
    // node notices within about a second (it polls its running VMs' processes) and creates it again.
    const before = (await drv.inspect('spread-1')).pid!;
    await drv.delete('spread-1', 0);
    const t0 = Date.now();
    await until('recreated and healed', async () => {
      const o = await drv.inspect('spread-1');
      return running(o) && o.pid !== before && cli(['--server', nodes.v1.api, '--token', nodes.v1.token, 'diff', '--actual'], { configHome: configHome() }).code === 0;
    }, 30_000);
    console.log(`a VM removed by hand on its node was running again after ${Date.now() - t0} ms`);
  });

  it('watch mode applies an edit and refuses a bad one without change', async () => {
    let said = '';
    watcher = spawn(process.execPath, [BIN, 'watch', '-f', manifestsDir(), '--debounce', '200ms', '--server', nodes.v2.api, '--token', nodes.v2.token], { env: testEnv(configHome()), stdio: ['ignore', 'pipe', 'pipe'] });
    watcher.stdout!.on('data', (c: Buffer) => (said += c.toString()));
    watcher.stderr!.on('data', (c: Buffer) => (said += c.toString()));
    await until('watch to start', async () => said.includes('applied'), WAIT_MS);
    const memoryOf = async (vm: string) => ((await (await anyClient()).get('VirtualMachine', vm)).spec as VmSpec).memoryMiB;
    await writeManifests('---\napiVersion: blixard.dev/v1\nkind: VirtualMachine\nmetadata: { name: added }\nspec: { image: app, memoryMiB: 16 }\n');
    await until('the edit to be applied', async () => (await vms()).some((v) => v.metadata.name === 'added'), WAIT_MS);
    said = '';
    await writeManifests('---\napiVersion: blixard.dev/v1\nkind: VirtualMachine\nmetadata: { name: added }\nspec: { image: app, memoryMiB: sixteen }\n');
    await until('the bad edit to be refused', async () => said.includes('not applied'), WAIT_MS);
    expect(await memoryOf('added')).toBe(16);
    watcher.kill('SIGTERM');
    watcher = undefined;
  });

  it('drains a node: its VMs stop there first, then run elsewhere, and the node ends up empty', async () => {
    await neverTwice(async () => {
      const r = cli(['--server', nodes.v1.api, '--token', nodes.v1.token, 'node', 'drain', 'v2', '--wait', '--timeout', '60s'], { configHome: configHome() });
      expect(r.code).toBe(0);
    });
    expect((await vms()).filter((v) => v.status.nodeId === nodes.v2.nodeId)).toEqual([]);
    // pinned-b may only run on zone b: with v2 cordoned it waits, and says why.
    expect((await vms()).find((v) => v.metadata.name === 'pinned-b')?.status.phase).toBe('Pending');
    expect(cli(['--server', nodes.v1.api, '--token', nodes.v1.token, 'node', 'uncordon', 'v2'], { configHome: configHome() }).code).toBe(0);
    await until('pinned-b back on v2', async () => (await vms()).find((v) => v.metadata.name === 'pinned-b' && v.status.phase === 'Running' && v.status.nodeId === nodes.v2.nodeId), WAIT_MS);
  });

  it('a node that is only cut off fences itself before its VMs run elsewhere', async () => {
    const onWorker = (await vms()).filter((v) => v.status.nodeId === nodes.w1.nodeId && v.metadata.name.startsWith('spread')).map((v) => v.metadata.name);
    expect(onWorker.length).toBeGreaterThan(0);
    const workerDrv = new ProcessDriver({ root: driverRoot(dataDir('w1'), 'process') });
    await neverTwice(async () => {
      await lab.unplug(labNode.w1);
      // The worker stops its own VMs (fencing) ...
      const fencedAt = await until('the worker to fence itself', async () => {
        for (const vm of onWorker) if (running(await workerDrv.inspect(vm))) return undefined;
        return Date.now();
      }, 30_000);
      // ... and only then do they run elsewhere.
      const movedAt = await until('the VMs to run elsewhere', async () => {
        const vs = await vms();
        return onWorker.every((n) => vs.find((v) => v.metadata.name === n && v.status.phase === 'Running' && v.status.nodeId !== nodes.w1.nodeId)) ? Date.now() : undefined;
      }, 60_000);
      expect(movedAt).toBeGreaterThanOrEqual(fencedAt);
      await lab.plug(labNode.w1);
      await until('the worker to be ready again', async () => (await nodes.v1.client.nodes()).find((n) => n.nodeId === nodes.w1.nodeId)?.ready, WAIT_MS);
    });
    // Back in touch, it runs none of the VMs that moved away.
    for (const vm of onWorker) expect(running(await workerDrv.inspect(vm))).toBe(false);
  });

  it('moves the VMs of a node killed together with its VM processes', async () => {
    // With two voters, killing one stops the cluster from committing; the walkthrough kills the
    // worker ("kill a node, watch VMs move"). First give it VMs again: they moved off it earlier.
    const victim = nodes.w1;
    await (await anyClient()).apply({ desired: [1, 2].map((i) => ({ kind: 'VirtualMachine' as const, name: `on-w1-${i}`, labels: {}, spec: { image: 'app', memoryMiB: 8, placement: { nodeSelector: { zone: 'c' } } } })), applyset: 'on-w1', prune: false, maxPrune: 0, dryRun: false });
    await until('VMs on the worker', async () => (await vms()).filter((v) => v.metadata.name.startsWith('on-w1') && v.status.phase === 'Running').length === 2, WAIT_MS);
    // Then lift the pin so they may move: only the node's death moves them now.
    await (await anyClient()).apply({ desired: [1, 2].map((i) => ({ kind: 'VirtualMachine' as const, name: `on-w1-${i}`, labels: {}, spec: { image: 'app', memoryMiB: 8 } })), applyset: 'on-w1', prune: false, maxPrune: 0, dryRun: false });
    const victimVms = ['on-w1-1', 'on-w1-2'];
    expect(await nodeOf('on-w1-1')).toBe(victim.nodeId);
    await victim.kill();
    for (const d of [new ProcessDriver({ root: driverRoot(dataDir('w1'), 'process') }), new QemuDriver({ root: driverRoot(dataDir('w1'), 'qemu') })]) {
      for (const o of await d.list()) if (o.pid) try { process.kill(o.pid, 'SIGKILL'); } catch { /* gone already */ }
    }
    const t0 = Date.now();
    // NotReady after --node-timeout, and its VMs' phase is Unknown (nobody can tell what they
    // do) until --fence-after more has passed and they move.
    await until('the node NotReady and its VMs Unknown', async () => {
      const n = (await nodes.v1.client.nodes()).find((x) => x.nodeId === victim.nodeId);
      const vs = await vms();
      return n && !n.ready && victimVms.every((name) => vs.find((v) => v.metadata.name === name)?.status.phase === 'Unknown');
    }, 15_000);
    const unknownAt = Date.now();
    await until('the VMs to run elsewhere', async () => {
      const vs = await vms();
      return victimVms.every((n) => vs.find((v) => v.metadata.name === n && v.status.phase === 'Running' && v.status.nodeId !== victim.nodeId));
    }, 60_000);
    // Not before the node timeout plus the fence time (counted from the last heartbeat, which
    // came at most a second or so before the kill).
    expect(Date.now() - t0).toBeGreaterThanOrEqual(4_000);
    expect(unknownAt - t0).toBeGreaterThanOrEqual(1_000);
    console.log(`from the node's death to its VMs Running elsewhere: ${Date.now() - t0} ms (node timeout ${NODE_TIMEOUT} + fence ${FENCE_AFTER})`);
    // The QEMU guest may only run on zone c: it waits for its node, and says so.
    await until('the guest to show its node is gone', async () => ['Unknown', 'Pending'].includes((await vms()).find((v) => v.metadata.name === 'guest')!.status.phase), WAIT_MS);
  });

  it('loses no acknowledged apply when the leader is killed, and placements continue under the new leader', async () => {
    const s = await nodes.v1.client.status();
    const leaderName = s.raft.leader === nodes.v1.nodeId ? 'v1' : 'v2';
    const follower = leaderName === 'v1' ? nodes.v2 : nodes.v1;
    const acked: string[] = [];
    for (let i = 0; i < 20; i++) {
      const req: ApplyRequest = { desired: [{ kind: 'VirtualMachine', name: `late-${i}`, labels: {}, spec: { image: 'app', memoryMiB: 8 } }], applyset: `late-${i}`, prune: false, maxPrune: 0, dryRun: false };
      await follower.client.apply(req);
      acked.push(`late-${i}`);
    }
    const t0 = Date.now();
    const steps: string[] = [];
    const step = (what: string) => steps.push(`${what} at ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    await nodes[leaderName].kill();
    // Two voters: the cluster needs both to commit; the killed one comes back from its data dir.
    nodes[leaderName] = await start(leaderName as 'v1' | 'v2', []);
    step('restarted');
    await until('a leader again', async () => (await follower.client.status()).raft.leader, WAIT_MS);
    step('leader');
    const leaderAt = Date.now();
    const names = new Set((await vms()).map((v) => v.metadata.name));
    expect(acked.filter((n) => !names.has(n))).toEqual([]);
    await follower.client.apply({ desired: [{ kind: 'VirtualMachine', name: 'after-failover', labels: {}, spec: { image: 'app', memoryMiB: 8 } }], applyset: 'after', prune: false, maxPrune: 0, dryRun: false });
    step('applied');
    // A forwarded call must not wait on a cached connection to the killed process (QUIC's idle
    // timeout, ~20 s here, was what it used to cost).
    expect(Date.now() - leaderAt).toBeLessThan(15_000);
    try {
      await until('the new VM placed and Running', async () => (await vms()).find((v) => v.metadata.name === 'after-failover' && v.status.phase === 'Running'), WAIT_MS);
    } catch (e) {
      console.log(JSON.stringify((await vms()).find((v) => v.metadata.name === 'after-failover')?.status));
      throw e;
    }
    step('running');
    console.log(`leader killed: ${steps.join(', ')}`);
  }, 150_000);
});
