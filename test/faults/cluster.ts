import { execFileSync } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { removeDir, startDaemon, tempDir, type Daemon } from '../helpers/daemon.js';
import type { Server } from './workload.js';

// A cluster of real node processes for the fault tests, each with an API port it keeps across
// restarts (clients go on using the address they know, as an operator's would).

export interface FaultCluster {
  readonly work: string;
  nodes: Daemon[];
  servers(): Server[];
  /** The index of the node that says it leads, or -1. */
  leader(among?: number[]): Promise<number>;
  /** Starts node i again from its data dir (after a kill or stop). */
  restart(i: number): Promise<Daemon>;
  /** Every process's stderr so far (node name and incarnation), to keep when a run fails. */
  logs(): { name: string; text: string }[];
  stop(): Promise<void>;
}

export async function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.once('error', reject);
  });
}

export interface FaultClusterOptions {
  /** Run node i through this command (e.g. `ip netns exec NS`). */
  prefix?: (i: number) => string[] | undefined;
  /** The host node i's API and Iroh listen on (loopback unless given). */
  host?: (i: number) => string;
  /** BLIXARD_TEST_BUGS for every node: a mistake the test must catch. */
  bugs?: string;
  /** Node i's data dir is a tmpfs of this many MiB (mounted here; needs root), to fill up. */
  tmpfsMiB?: (i: number) => number | undefined;
}

export async function startFaultCluster(size: number, opts: FaultClusterOptions = {}): Promise<FaultCluster> {
  const work = await tempDir('blixard-faults-');
  const configHome = path.join(work, 'config');
  const mounts: string[] = [];
  for (let i = 0; i < size; i++) {
    const mib = opts.tmpfsMiB?.(i);
    if (mib === undefined) continue;
    const dir = path.join(work, `n${i + 1}`);
    await mkdir(dir, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m,mode=0700`, 'tmpfs', dir]);
    mounts.push(dir);
  }
  const apis: string[] = [];
  for (let i = 0; i < size; i++) apis.push(`${opts.host?.(i) ?? '127.0.0.1'}:${await freeTcpPort()}`);
  const start = (i: number, args: string[]) =>
    startDaemon({
      dataDir: path.join(work, `n${i + 1}`),
      configHome,
      // Only the first start: the data dir keeps the address (and port) Iroh was bound to.
      args: opts.host && args.length ? [...args, '--listen', `${opts.host(i)}:0`] : args,
      api: apis[i]!,
      ...(opts.prefix?.(i) ? { prefix: opts.prefix(i)! } : {}),
      ...(opts.bugs ? { env: { BLIXARD_TEST_BUGS: opts.bugs } } : {}),
    });
  const nodes: Daemon[] = [];
  try {
    nodes.push(await start(0, ['--bootstrap', '--name', 'n1', '--hypervisor', 'process']));
    for (let i = 1; i < size; i++) {
      const ticket = (await nodes[0]!.client.ticket({ role: 'voter', ttlSeconds: 600 })).ticket;
      nodes.push(await start(i, ['--join', ticket, '--name', `n${i + 1}`, '--hypervisor', 'process']));
    }
    const deadline = Date.now() + 30_000;
    for (;;) {
      const s = await nodes[0]!.client.status();
      if (s.raft.members.filter((m) => m.role === 'voter').length === size && s.raft.leader) break;
      if (Date.now() > deadline) throw new Error(`the cluster did not reach ${size} voters within 30 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (e) {
    await Promise.all(nodes.map((d) => d.stop().catch(() => {})));
    for (const dir of mounts) execFileSync('umount', [dir]);
    await removeDir(work);
    throw e;
  }
  const gone: { name: string; text: string }[] = [];
  const cluster: FaultCluster = {
    work,
    nodes,
    servers: () => cluster.nodes.map((d) => ({ api: d.api, token: d.token })),
    async leader(among = cluster.nodes.map((_, i) => i)) {
      for (const i of among) {
        const s = await cluster.nodes[i]!.client.status().catch(() => undefined);
        if (s?.raft.role === 'leader') return i;
      }
      return -1;
    },
    async restart(i) {
      gone.push({ name: `n${i + 1}.${gone.filter((g) => g.name.startsWith(`n${i + 1}.`)).length + 1}`, text: cluster.nodes[i]!.stderr() });
      const d = await start(i, []);
      cluster.nodes[i] = d;
      return d;
    },
    logs: () => [...gone, ...cluster.nodes.map((d, i) => ({ name: `n${i + 1}.now`, text: d.stderr() }))],
    async stop() {
      // A node left paused (SIGSTOP) would take SIGTERM only once continued.
      for (const d of cluster.nodes) d.proc.kill('SIGCONT');
      await Promise.all(cluster.nodes.map((d) => d.stop().catch(() => {})));
      for (const dir of mounts) execFileSync('umount', [dir]);
      await removeDir(work);
    },
  };
  return cluster;
}
