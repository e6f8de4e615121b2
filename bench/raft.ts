import path from 'node:path';
import { ApiError, type ApplyRequest } from '../src/api/index.js';
import { MemoryStorage, RawNode, type Message } from '../src/raft/core/index.js';
import { removeDir, startDaemon, tempDir, type Daemon } from '../test/helpers/daemon.js';
import type { Row } from './table.js';

// Issue 3's numbers: committed writes per second and p50/p99 commit latency for 1, 16 and 64
// concurrent API clients against a 3-node loopback cluster with fsync on; entries per fsync; the
// in-memory core alone; and the time from starting 3 fresh nodes to an elected leader.

const write = (i: number, c: number): ApplyRequest => ({
  desired: [{ kind: 'Image', name: `b-${c}-${i}`, labels: {}, spec: { blob: `blake3:${'f'.repeat(64)}`, format: 'raw' }, source: { hash: `blake3:${'f'.repeat(64)}`, size: null } }],
  applyset: `c${c}-${i}`,
  prune: false,
  maxPrune: 0,
  dryRun: false,
});

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

async function metric(d: Daemon, name: string): Promise<number> {
  const text = await (await fetch(`${d.api}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

export async function raftBench(): Promise<Row[]> {
  const rows: Row[] = [];
  rows.push(...coreBench());
  const work = await tempDir('blixard-raft-bench-');
  const configHome = path.join(work, 'config');
  const nodes: Daemon[] = [];
  try {
    const t0 = performance.now();
    nodes.push(await startDaemon({ dataDir: path.join(work, 'n1'), configHome, args: ['--bootstrap', '--name', 'n1', '--hypervisor', 'process'] }));
    const firstLeader = performance.now() - t0;
    for (const name of ['n2', 'n3']) {
      const t = (await nodes[0]!.client.ticket({ role: 'voter', ttlSeconds: 600 })).ticket;
      nodes.push(await startDaemon({ dataDir: path.join(work, name), configHome, args: ['--join', t, '--name', name, '--hypervisor', 'process'] }));
    }
    for (;;) {
      const s = await nodes[0]!.client.status();
      if (s.raft.members.filter((m) => m.role === 'voter').length === 3) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const allVoters = performance.now() - t0;
    rows.push({ name: 'fresh nodes: process start to elected leader (bootstrap node)', value: firstLeader, unit: 'ms', target: '' });
    rows.push({ name: 'fresh nodes: to 3 voters (2 joins by ticket)', value: allVoters, unit: 'ms', target: '' });

    const leader = nodes.find((d) => d.nodeId === nodes[0]!.nodeId)!;
    for (const clients of [1, 16, 64]) {
      const before = { fsyncs: await metric(leader, 'blixard_raft_wal_fsyncs'), entries: await metric(leader, 'blixard_raft_entries_persisted') };
      const lat: number[] = [];
      const seconds = 5;
      const end = performance.now() + seconds * 1000;
      let done = 0;
      const start = performance.now();
      await Promise.all(
        Array.from({ length: clients }, async (_, c) => {
          for (let i = 0; performance.now() < end; i++) {
            const t = performance.now();
            try {
              await leader.client.apply(write(i, clients * 1000 + c));
            } catch (e) {
              if (e instanceof ApiError) continue;
              throw e;
            }
            lat.push(performance.now() - t);
            done++;
          }
        }),
      );
      const elapsed = (performance.now() - start) / 1000;
      const after = { fsyncs: await metric(leader, 'blixard_raft_wal_fsyncs'), entries: await metric(leader, 'blixard_raft_entries_persisted') };
      rows.push({ name: `${clients} clients: committed writes per second`, value: done / elapsed, unit: '/s', target: clients === 64 ? '>= 5000' : '' });
      rows.push({ name: `${clients} clients: commit latency p50`, value: pct(lat, 50), unit: 'ms', target: '' });
      rows.push({ name: `${clients} clients: commit latency p99`, value: pct(lat, 99), unit: 'ms', target: clients === 64 ? '< 50 ms' : '' });
      rows.push({ name: `${clients} clients: log entries per fsync (leader)`, value: (after.entries - before.entries) / Math.max(1, after.fsyncs - before.fsyncs), unit: '', target: '' });
    }
  } finally {
    for (const d of nodes) await d.stop().catch(() => {});
    await removeDir(work);
  }
  return rows;
}

/** The pure core alone: three RawNodes passing messages in memory, no disk, no network. */
function coreBench(): Row[] {
  const ids = ['a', 'b', 'c'];
  const nodes = new Map<string, { raw: RawNode; storage: MemoryStorage }>();
  for (const id of ids) {
    const storage = new MemoryStorage();
    storage.bootstrap({ voters: ids, learners: [] });
    let seed = id.charCodeAt(0);
    const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    nodes.set(id, { raw: new RawNode({ id, electionTick: 10, heartbeatTick: 1, preVote: true, checkQuorum: true, maxInflight: 256, maxSizePerMsg: 1 << 20, applied: 1, rand }, storage), storage });
  }
  const inbox: Message[] = [];
  const pump = () => {
    let moved = true;
    while (moved) {
      moved = false;
      for (const { raw, storage } of nodes.values()) {
        while (raw.hasReady()) {
          const rd = raw.ready();
          if (rd.snapshot) storage.applySnapshot(rd.snapshot);
          if (rd.entries.length) storage.append(rd.entries);
          if (rd.hardState) storage.setHardState(rd.hardState);
          inbox.push(...rd.messages);
          raw.advance();
          moved = true;
        }
      }
      if (inbox.length) {
        const batch = inbox.splice(0);
        for (const m of batch) nodes.get(m.to)?.raw.step(m);
        moved = true;
      }
    }
  };
  const a = nodes.get('a')!.raw;
  a.campaign();
  pump();
  const data = new Uint8Array(64);
  const N = 200_000;
  const t0 = performance.now();
  for (let i = 0; i < N; i += 100) {
    for (let j = 0; j < 100; j++) a.propose(data);
    pump();
  }
  const secs = (performance.now() - t0) / 1000;
  return [{ name: 'core alone: proposals per second through 3 in-memory nodes', value: N / secs, unit: '/s', target: '>= 200000' }];
}
