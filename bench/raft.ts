import path from 'node:path';
import { ApiError, type ApplyRequest } from '../src/api/index.js';
import { bindAddresses, IrohRaftTransport, ProtocolRouter } from '../src/p2p/index.js';
import { RaftNode, type StateMachine } from '../src/raft/index.js';
import { MemoryStorage, RawNode, type Message } from '../src/raft/core/index.js';
import { removeDir, startDaemon, tempDir, type Daemon } from '../test/helpers/daemon.js';
import { replicationFloor } from './replication-floor.js';
import { pct, type Row } from './table.js';

// Issue 3's numbers: committed writes per second and p50/p99 commit latency for 1, 16 and 64
// concurrent API clients against a 3-node loopback cluster with fsync on; entries per fsync on the
// leader and on a follower; the in-memory core alone; and the time from starting 3 fresh nodes to
// an elected leader, both as the daemon grows a cluster (bootstrap one, join two by ticket) and as
// 3 voters bootstrapped together with the same configuration over the Iroh transport.

const write = (i: number, c: number): ApplyRequest => ({
  desired: [{ kind: 'Image', name: `b-${c}-${i}`, labels: {}, spec: { blob: `blake3:${'f'.repeat(64)}`, format: 'raw' }, source: { hash: `blake3:${'f'.repeat(64)}`, size: null } }],
  applyset: `c${c}-${i}`,
  prune: false,
  maxPrune: 0,
  dryRun: false,
});

async function metric(d: Daemon, name: string): Promise<number> {
  const text = await (await fetch(`${d.api}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

export async function raftBench(): Promise<Row[]> {
  const rows: Row[] = [];
  rows.push(...coreBench());
  rows.push(...(await freshTrioBench()));
  // What the machine allows with no Blixard logic at all, measured in this run before the
  // cluster starts (nothing else running): the write targets below are shares of it.
  const floor = new Map((await replicationFloor([1, 64], 5)).map((f) => [f.clients, f]));
  const f1 = floor.get(1)!;
  const f64 = floor.get(64)!;
  rows.push({ name: 'floor, no Raft/state/documents (HTTP + fsync + QUIC to 2 followers): 1 client, latency p50', value: f1.p50, unit: 'ms', target: 'floor' });
  rows.push({ name: 'floor: 64 clients, writes per second', value: f64.rate, unit: '/s', target: 'floor' });
  rows.push({ name: 'floor: 64 clients, latency p99', value: f64.p99, unit: 'ms', target: 'floor' });
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
    // A bench that hangs measures nothing: it fails saying what it saw.
    for (const until = Date.now() + 60_000; ; ) {
      const s = await nodes[0]!.client.status();
      if (s.raft.members.filter((m) => m.role === 'voter').length === 3) break;
      if (Date.now() > until) throw new Error(`raft bench: no 3 voters after 60 s: ${JSON.stringify(s.raft)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const allVoters = performance.now() - t0;
    rows.push({ name: 'fresh nodes: process start to elected leader (bootstrap node)', value: firstLeader, unit: 'ms', target: '' });
    rows.push({ name: 'fresh nodes: to 3 voters (2 joins by ticket)', value: allVoters, unit: 'ms', target: '' });

    const leader = nodes.find((d) => d.nodeId === nodes[0]!.nodeId)!;
    const follower = nodes.find((d) => d !== leader)!;
    const walCounts = async (d: Daemon) => ({ fsyncs: await metric(d, 'blixard_raft_wal_fsyncs'), entries: await metric(d, 'blixard_raft_entries_persisted') });
    for (const clients of [1, 16, 64]) {
      const before = await walCounts(leader);
      const followerBefore = await walCounts(follower);
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
      const after = await walCounts(leader);
      // The follower may still be writing the last entries: wait until it holds as many.
      let followerAfter = await walCounts(follower);
      for (let i = 0; i < 100 && followerAfter.entries - followerBefore.entries < after.entries - before.entries; i++) {
        await new Promise((r) => setTimeout(r, 20));
        followerAfter = await walCounts(follower);
      }
      const rate = done / elapsed;
      const of = (x: number, f: number) => `${Math.round((100 * x) / f)} % of the floor`;
      rows.push({ name: `${clients} clients: committed writes per second`, value: rate, unit: '/s', target: clients === 64 ? `>= 70 % of the floor (${Math.round(0.7 * f64.rate)}/s): ${of(rate, f64.rate)}` : '' });
      rows.push({ name: `${clients} clients: commit latency p50`, value: pct(lat, 50), unit: 'ms', target: clients === 1 ? `<= 2x the floor (${(2 * f1.p50).toFixed(1)} ms): ${(pct(lat, 50) / f1.p50).toFixed(1)}x` : '' });
      rows.push({ name: `${clients} clients: commit latency p99`, value: pct(lat, 99), unit: 'ms', target: clients === 64 ? `<= 3x the floor (${Math.round(3 * f64.p99)} ms): ${(pct(lat, 99) / f64.p99).toFixed(1)}x` : '' });
      rows.push({ name: `${clients} clients: log entries per fsync (leader)`, value: (after.entries - before.entries) / Math.max(1, after.fsyncs - before.fsyncs), unit: '', target: '' });
      rows.push({ name: `${clients} clients: log entries per fsync (follower)`, value: (followerAfter.entries - followerBefore.entries) / Math.max(1, followerAfter.fsyncs - followerBefore.fsyncs), unit: '', target: '' });
    }
  } finally {
    for (const d of nodes) await d.stop().catch(() => {});
    await removeDir(work);
  }
  return rows;
}

/**
 * 3 fresh voters started together, each an in-process Iroh node on loopback (no discovery) with a
 * Raft node over the Iroh transport, all bootstrapped with the same 3-voter configuration and the
 * daemon's Raft timings: from starting them to a leader every one of them knows. A few rounds.
 */
export async function freshTrioBench(rounds = 3): Promise<Row[]> {
  const { Iroh, NodeDiscoveryConfig } = await import('@number0/iroh');
  const sm: StateMachine = { apply: () => undefined, snapshot: () => new Uint8Array(0), restore: () => {} };
  const total: number[] = [];
  const raftOnly: number[] = [];
  // Staging relays start faster when offline; for the nodes this bench starts, never a default.
  const prev = process.env.IROH_FORCE_STAGING_RELAYS;
  process.env.IROH_FORCE_STAGING_RELAYS = '1';
  try {
    for (let round = 0; round < rounds; round++) {
      const work = await tempDir('blixard-raft-trio-');
      const members = new Set<string>();
      const started: { iroh: InstanceType<typeof Iroh>; router: ProtocolRouter }[] = [];
      const nodes: RaftNode[] = [];
      try {
        const t0 = performance.now();
        await Promise.all(
          [0, 1, 2].map(async () => {
            const router = new ProtocolRouter((id) => members.has(id));
            const iroh = await Iroh.memory({ enableDocs: false, nodeDiscovery: NodeDiscoveryConfig.None, ...bindAddresses('127.0.0.1:0'), protocols: router.irohProtocols() });
            started.push({ iroh, router });
          }),
        );
        const addrs = await Promise.all(started.map((n) => n.iroh.net.nodeAddr()));
        const peers = addrs.map((a) => ({ nodeId: a.nodeId, addresses: a.addresses ?? [] }));
        for (const p of peers) members.add(p.nodeId);
        const t1 = performance.now();
        nodes.push(
          ...(await Promise.all(
            started.map((n, i) => {
              const transport = new IrohRaftTransport(() => n.iroh.node.endpoint(), n.router);
              transport.setPeers(peers.filter((p) => p.nodeId !== peers[i]!.nodeId));
              return RaftNode.open({ dir: path.join(work, `n${i}`), id: peers[i]!.nodeId, transport, sm, bootstrap: { voters: peers.map((p) => p.nodeId), learners: [] } });
            }),
          )),
        );
        for (;;) {
          const lead = nodes[0]!.leader;
          if (lead && nodes.every((n) => n.leader === lead) && nodes.some((n) => n.isLeader)) break;
          if (performance.now() - t0 > 30_000) throw new Error('no leader among 3 fresh nodes within 30 s');
          await new Promise((r) => setTimeout(r, 5));
        }
        const t2 = performance.now();
        total.push(t2 - t0);
        raftOnly.push(t2 - t1);
      } finally {
        for (const n of nodes) await n.close().catch(() => {});
        await Promise.all(started.map((n) => n.iroh.node.shutdown().catch(() => {})));
        await removeDir(work);
      }
    }
  } finally {
    if (prev === undefined) delete process.env.IROH_FORCE_STAGING_RELAYS;
    else process.env.IROH_FORCE_STAGING_RELAYS = prev;
  }
  return [
    { name: `fresh 3 voters together over Iroh: start to elected leader (p50 of ${rounds})`, value: pct(total, 50), unit: 'ms', target: '' },
    { name: `fresh 3 voters together over Iroh: start to elected leader (max of ${rounds})`, value: Math.max(...total), unit: 'ms', target: '' },
    { name: 'fresh 3 voters together: of which Raft (nodes open to leader, p50)', value: pct(raftOnly, 50), unit: 'ms', target: '' },
  ];
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
