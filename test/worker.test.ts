import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VmStatus } from '../src/api/index.js';
import { MergedMap, type MapRecord } from '../src/p2p/index.js';
import { ProcessDriver, driverRoot } from '../src/vm/index.js';
import { cli, removeDir, removeVms, startDaemon, tempDir, type Daemon } from './helpers/daemon.js';
import { until } from './helpers/until.js';

// A worker takes no part in Raft: it joins with a ticket, follows the cluster document, runs the
// VMs placed on it, and reports them through the status document under its own author.

let work: string;
let voter: Daemon;
let worker: Daemon;
const configHome = () => path.join(work, 'config');

const WAIT_MS = 30_000;

beforeAll(async () => {
  work = await tempDir();
  // The voter runs no VMs of its own here: only the worker offers the executable format.
  voter = await startDaemon({ dataDir: path.join(work, 'v1'), configHome: configHome(), args: ['--bootstrap', '--name', 'v1', '--hypervisor', 'process', '--labels', 'zone=v'] });
  const t = (await voter.client.ticket({ role: 'worker', ttlSeconds: 600 })).ticket;
  worker = await startDaemon({ dataDir: path.join(work, 'w1'), configHome: configHome(), args: ['--join', t, '--name', 'w1', '--hypervisor', 'process', '--labels', 'zone=w'] });
});

afterAll(async () => {
  await worker?.stop().catch(() => {});
  await voter?.stop().catch(() => {});
  await removeVms(path.join(work, 'w1'));
  await removeVms(path.join(work, 'v1'));
  await removeDir(work);
});

describe('a worker node', () => {
  it('joins without a Raft role, and the leader sees it heartbeat', async () => {
    const ws = await worker.client.status();
    expect(ws.raft.role).toBe('none');
    const vs = await voter.client.status();
    expect(vs.raft.members.map((m) => m.nodeId)).toEqual([voter.nodeId]);
    await until('the worker to be ready on the leader', async () => (await voter.client.nodes()).find((n) => n.nodeId === worker.nodeId && n.ready), WAIT_MS);
    expect((await voter.client.list('Peer')).map((p) => p.metadata.name)).toEqual(['w1']);
  });

  it('runs the VMs placed on it from desired state it got through the documents, and reports them', async () => {
    const dir = path.join(work, 'set');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'app.sh'), '#!/bin/sh\necho WORKER-READY\nexec sleep 100000\n', { mode: 0o755 });
    await writeFile(
      path.join(dir, 'vm.yaml'),
      `apiVersion: blixard.dev/v1\nkind: Image\nmetadata: { name: app }\nspec: { path: ./app.sh, format: executable, readyPattern: WORKER-READY }\n---\napiVersion: blixard.dev/v1\nkind: VirtualMachine\nmetadata: { name: on-worker }\nspec:\n  image: app\n  memoryMiB: 32\n  placement: { nodeSelector: { zone: w } }\n`,
    );
    // Applied through the worker: it forwards to the leader.
    const r = cli(['--server', worker.api, '--token', worker.token, 'apply', '-f', dir], { configHome: configHome() });
    expect(r.code).toBe(0);
    const st = await until('the VM to run on the worker', async () => {
      const v = await voter.client.get('VirtualMachine', 'on-worker');
      return (v.status as VmStatus).phase === 'Running' ? (v.status as VmStatus) : undefined;
    }, 60_000);
    expect(st.nodeId).toBe(worker.nodeId);
    const o = await new ProcessDriver({ root: driverRoot(worker.dataDir, 'process') }).inspect('on-worker');
    expect(o.state).toBe('running');
    expect(await new ProcessDriver({ root: driverRoot(voter.dataDir, 'process') }).list()).toEqual([]);

    // The voter's replica of the status document, raw: the worker's records (batches, maybe a
    // snapshot) under its prefix, all by one author (the worker's), saying the VM is Running.
    const res = await fetch(`${voter.api}/v1/debug/documents/status?prefix=${encodeURIComponent(`status/${worker.nodeId}/`)}`, { headers: { authorization: `Bearer ${voter.token}` } });
    expect(res.status).toBe(200);
    const items = ((await res.json()) as { items: { key: string; author: string; timestamp: string; value: MapRecord }[] }).items;
    expect(items.length).toBeGreaterThan(0);
    expect(new Set(items.map((i) => i.author)).size).toBe(1);
    for (const i of items) expect(i.key).toMatch(new RegExp(`^status/${worker.nodeId}/(batch/[0-9a-f]{14}|snapshot)$`));
    const merged = new MergedMap();
    for (const i of items) merged.apply(i.value);
    expect((merged.get('vm/on-worker') as { phase: string }).phase).toBe('Running');
    expect(Date.parse(items.at(-1)!.timestamp)).toBeGreaterThan(Date.now() - 600_000);
    expect((await fetch(`${voter.api}/v1/debug/documents/nope`, { headers: { authorization: `Bearer ${voter.token}` } })).status).toBe(404);
    expect((await fetch(`${voter.api}/v1/debug/documents/status`)).status).toBe(401);
  });
});
