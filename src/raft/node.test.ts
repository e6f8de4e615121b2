import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeRecord } from './codec.js';
import { MemNetwork, type MemNetworkOptions } from './mem-transport.js';
import { NodeStoppedError, NotLeaderError, RaftNode } from './node.js';
import type { StateMachine } from './state-machine.js';
import { Wal } from './wal.js';
import { until } from '../../test/helpers/until.js';

// The Raft node as a daemon runs it: real WAL and snapshot files, real timers, an in-memory
// network. (Safety under faults is the simulator's job, test/raft-sim; this is the shell.)

class Log implements StateMachine {
  items: string[] = [];
  /** Sizes of the snapshots restored (a partial one would not parse). */
  restores: number[] = [];
  /** The index of each snapshot restored. */
  restoredAt: number[] = [];
  apply(data: Uint8Array): unknown {
    this.items.push(Buffer.from(data).toString());
    return this.items.length;
  }
  snapshot(): Uint8Array {
    return Buffer.from(JSON.stringify(this.items));
  }
  restore(data: Uint8Array, index: number): void {
    this.restores.push(data.length);
    this.restoredAt.push(index);
    this.items = data.length ? (JSON.parse(Buffer.from(data).toString()) as string[]) : [];
  }
}

interface Member {
  id: string;
  dir: string;
  sm: Log;
  node: RaftNode;
}

let dirs: string[] = [];
let nodes: RaftNode[] = [];
afterEach(async () => {
  for (const n of nodes) await n.close().catch(() => {});
  for (const d of dirs) await rm(d, { recursive: true, force: true });
  dirs = [];
  nodes = [];
});

const fast = { tickMs: 10, electionTick: 10, heartbeatTick: 1 };

async function member(net: MemNetwork, id: string, dir: string, opts: { bootstrap?: string[]; snapshotEvery?: number; keepBehind?: number; onWarning?: (msg: string) => void } = {}): Promise<Member> {
  const sm = new Log();
  const node = await RaftNode.open({
    dir,
    id,
    transport: net.transport(id),
    sm,
    ...fast,
    ...(opts.bootstrap ? { bootstrap: { voters: opts.bootstrap, learners: [] } } : {}),
    ...(opts.snapshotEvery ? { snapshotEvery: opts.snapshotEvery } : {}),
    ...(opts.keepBehind !== undefined ? { keepBehind: opts.keepBehind } : {}),
    ...(opts.onWarning ? { onWarning: opts.onWarning } : {}),
  });
  nodes.push(node);
  return { id, dir, sm, node };
}

async function cluster(n: number, opts: { snapshotEvery?: number; keepBehind?: number; net?: MemNetworkOptions } = {}) {
  const { net: netOpts, ...memberOpts } = opts;
  const net = new MemNetwork(netOpts);
  const ids = Array.from({ length: n }, (_, i) => `n${i + 1}`);
  const members: Member[] = [];
  for (const id of ids) {
    const dir = await mkdtemp(path.join(os.tmpdir(), `raftnode-${id}-`));
    dirs.push(dir);
    members.push(await member(net, id, dir, { bootstrap: ids, ...memberOpts }));
  }
  return { net, members };
}

// In-process: conditions change within milliseconds, so ask often.
const WAIT_MS = 10_000;
const POLL_MS = 10;

const leaderOf = (ms: Member[]) => until('a leader', () => ms.find((m) => m.node.isLeader), WAIT_MS, POLL_MS);

describe('RaftNode', () => {
  it('elects a leader and applies every acknowledged proposal on every member, in order', async () => {
    const { members } = await cluster(3);
    const leader = await leaderOf(members);
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => leader.node.propose(Buffer.from(`op-${i}`))));
    expect(new Set(results.map((r) => r.index)).size).toBe(200);
    await until('all applied everywhere', () => members.every((m) => m.sm.items.length === 200), WAIT_MS, POLL_MS);
    for (const m of members) expect(m.sm.items).toEqual(leader.sm.items);
    const follower = members.find((m) => m !== leader)!;
    await expect(follower.node.propose(Buffer.from('x'))).rejects.toBeInstanceOf(NotLeaderError);
    expect(follower.node.leader).toBe(leader.id);
    await leader.node.readBarrier();
  });

  it('a node that stopped says so (not "no leader, try again"): to proposals waiting and to later calls', async () => {
    const { net, members } = await cluster(3);
    const leader = await leaderOf(members);
    await leader.node.propose(Buffer.from('before'));
    // Cut off, its next proposal waits for a quorum that does not answer; then the node stops.
    net.isolate(leader.id);
    // (The expectations are attached first: the rejections come during close().)
    const waiting = expect(leader.node.propose(Buffer.from('never'))).rejects.toBeInstanceOf(NodeStoppedError);
    const reading = expect(leader.node.readBarrier(5_000)).rejects.toBeInstanceOf(NodeStoppedError);
    await leader.node.close();
    await waiting;
    await reading;
    await expect(leader.node.propose(Buffer.from('after'))).rejects.toBeInstanceOf(NodeStoppedError);
    await expect(leader.node.readBarrier()).rejects.toBeInstanceOf(NodeStoppedError);
  });

  it('elects a new leader when the old one is cut off, and the old one rejoins as a follower', async () => {
    const { net, members } = await cluster(3);
    const old = await leaderOf(members);
    await old.node.propose(Buffer.from('before'));
    net.isolate(old.id);
    const rest = members.filter((m) => m !== old);
    const next = await until('a new leader', () => rest.find((m) => m.node.isLeader), WAIT_MS, POLL_MS);
    await next.node.propose(Buffer.from('after'));
    await until('the old leader to step down (check quorum)', () => !old.node.isLeader, WAIT_MS, POLL_MS);
    net.heal(old.id);
    await until('the old leader to catch up', () => old.sm.items.includes('after'), WAIT_MS, POLL_MS);
    expect(old.sm.items).toEqual(next.sm.items);
  });

  it('a read barrier proves leadership: a leader cut off answers no read, even before it steps down', async () => {
    const { net, members } = await cluster(3);
    const old = await leaderOf(members);
    await old.node.propose(Buffer.from('before'));
    await old.node.readBarrier(); // in touch: resolves
    net.isolate(old.id);
    // Right after the cut it still believes it leads; a read must not be served from its state.
    expect(old.node.isLeader).toBe(true);
    await expect(old.node.readBarrier(500)).rejects.toBeInstanceOf(NotLeaderError);
    const next = await until('a new leader', () => members.filter((m) => m !== old).find((m) => m.node.isLeader), WAIT_MS, POLL_MS);
    await next.node.propose(Buffer.from('after'));
    // A follower's barrier asks the leader, and returns once the follower applied what it said.
    const follower = members.find((m) => m !== old && m !== next)!;
    await follower.node.readBarrier();
    expect(follower.sm.items).toContain('after');
    net.heal(old.id);
  });

  it('restarts from its WAL and snapshots, compacting the log as it goes', async () => {
    const { net, members } = await cluster(3, { snapshotEvery: 50, keepBehind: 10 });
    const leader = await leaderOf(members);
    for (let i = 0; i < 300; i++) await leader.node.propose(Buffer.from(`op-${i}`));
    const f = members.find((m) => m !== leader)!;
    await until('the follower to apply everything', () => f.sm.items.length === 300, WAIT_MS, POLL_MS);
    expect((await readdir(path.join(f.dir, 'snap'))).filter((x) => x.endsWith('.snap')).length).toBeGreaterThan(0);
    await f.node.close();
    nodes = nodes.filter((n) => n !== f.node);
    for (let i = 300; i < 320; i++) await leader.node.propose(Buffer.from(`op-${i}`));
    const again = await member(net, f.id, f.dir, { snapshotEvery: 50, keepBehind: 10 });
    await until('the restarted follower to catch up', () => again.sm.items.length === 320, WAIT_MS, POLL_MS);
    expect(again.sm.items).toEqual(leader.sm.items);
  });

  it('restarts from the older snapshot when the newest is damaged: compaction kept the WAL back to it', async () => {
    const net = new MemNetwork();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'raftnode-n1-'));
    dirs.push(dir);
    const opts = { bootstrap: ['n1'], snapshotEvery: 50, keepBehind: 0 };
    const first = await member(net, 'n1', dir, opts);
    await leaderOf([first]);
    for (let i = 0; i < 300; i++) await first.node.propose(Buffer.from(`op-${i}`));
    await first.node.close();
    nodes = nodes.filter((n) => n !== first.node);
    const segments = (await readdir(path.join(dir, 'wal'))).map((n) => Number(n.replace('.wal', ''))).sort((a, b) => a - b);
    expect(segments[0]).toBeGreaterThan(1); // the oldest segments are gone
    const snaps = (await readdir(path.join(dir, 'snap'))).filter((n) => n.endsWith('.snap')).sort();
    expect(snaps).toHaveLength(2);
    const newestIndex = Number(/-(\d{16})\.snap$/.exec(snaps[1]!)![1]);
    const newest = path.join(dir, 'snap', snaps[1]!);
    const buf = await readFile(newest);
    buf[buf.length - 1] = buf[buf.length - 1]! ^ 0xff;
    await writeFile(newest, buf);

    const warnings: string[] = [];
    const again = await member(net, 'n1', dir, { ...opts, onWarning: (m) => warnings.push(m) });
    expect(warnings.join('\n')).toContain(newest);
    expect(again.sm.restoredAt[0]).toBeLessThan(newestIndex);
    await leaderOf([again]);
    await again.node.readBarrier();
    expect(again.sm.items).toEqual(Array.from({ length: 300 }, (_, i) => `op-${i}`));
  });

  it('adds a learner, promotes it to voter, and it catches up from a snapshot', async () => {
    const { net, members } = await cluster(3, { snapshotEvery: 20, keepBehind: 0 });
    const leader = await leaderOf(members);
    for (let i = 0; i < 60; i++) await leader.node.propose(Buffer.from(`op-${i}`));
    const dir = await mkdtemp(path.join(os.tmpdir(), 'raftnode-n4-'));
    dirs.push(dir);
    const n4 = await member(net, 'n4', dir, { snapshotEvery: 20, keepBehind: 0 });
    await leader.node.proposeConfChange({ changes: [{ type: 'addLearner', node: 'n4' }] });
    await until('the learner to catch up', () => n4.sm.items.length === 60, WAIT_MS, POLL_MS);
    await leader.node.proposeConfChange({ changes: [{ type: 'addNode', node: 'n4' }] });
    await until('n4 to be a voter everywhere', () => members.every((m) => m.node.membership.voters.includes('n4')), WAIT_MS, POLL_MS);
    await leader.node.propose(Buffer.from('with-four'));
    await until('n4 to apply it', () => n4.sm.items.at(-1) === 'with-four', WAIT_MS, POLL_MS);
  });

  it('catches a lagging follower up with a snapshot sent in many chunks', async () => {
    const chunk = 8 * 1024;
    const { net, members } = await cluster(3, { snapshotEvery: 20, keepBehind: 0, net: { snapshotChunkBytes: chunk } });
    const leader = await leaderOf(members);
    const lag = members.find((m) => m !== leader)!;
    net.isolate(lag.id);
    for (let w = 0; w < 10; w++) await Promise.all(Array.from({ length: 10 }, (_, i) => leader.node.propose(Buffer.from(big(w * 10 + i)))));
    expect(leader.node.status().firstIndex).toBeGreaterThan(lag.node.status().lastIndex + 1); // only a snapshot can help
    net.heal(lag.id);
    await until('the follower to catch up', () => lag.sm.items.length === 100, WAIT_MS, POLL_MS);
    expect(lag.sm.items).toEqual(leader.sm.items);
    const size = lag.sm.restores.at(-1)!;
    expect(size).toBeGreaterThan(10 * chunk);
    expect(net.snapshots.chunks).toBeGreaterThanOrEqual(Math.ceil(size / chunk));
    expect(transfers(members)).toMatchObject({ succeeded: 1, failed: 0 });
  });

  it('retries a snapshot transfer that broke off; the follower never applies part of one', async () => {
    const broken: number[] = [];
    const { net, members } = await cluster(3, {
      snapshotEvery: 20,
      keepBehind: 0,
      net: {
        snapshotChunkBytes: 4 * 1024,
        // The first two transfers break off midway (the stream dies at chunk 5, then 30).
        onSnapshotChunk: ({ transfer, chunk }) => {
          const cut = (transfer === 1 && chunk === 5) || (transfer === 2 && chunk === 30);
          if (cut) broken.push(transfer);
          return !cut;
        },
      },
    });
    const leader = await leaderOf(members);
    const lag = members.find((m) => m !== leader)!;
    net.isolate(lag.id);
    for (let w = 0; w < 10; w++) await Promise.all(Array.from({ length: 10 }, (_, i) => leader.node.propose(Buffer.from(big(w * 10 + i)))));
    net.heal(lag.id);
    await until('the follower to catch up', () => lag.sm.items.length === 100, WAIT_MS, POLL_MS);
    expect(lag.sm.items).toEqual(leader.sm.items);
    expect(broken).toEqual([1, 2]);
    expect(net.snapshots.failed).toBe(2);
    expect(transfers(members)).toMatchObject({ failed: 2, succeeded: 1 });
    // Bootstrap restored an empty state ("[]"); the only other restore is the whole snapshot.
    expect(lag.sm.restores.filter((n) => n > 2)).toEqual([JSON.stringify(lag.sm.items).length]);
  });

  it("a leader sends its appends while it writes them: a commit takes one disk's fsync, not the leader's and then a follower's", async () => {
    const { members } = await cluster(3);
    const leader = await leaderOf(members);
    await leader.node.propose(Buffer.from('warm-up'));
    await until('the followers to hold it', () => members.every((m) => m.node.persistedIndex >= leader.node.persistedIndex), WAIT_MS, POLL_MS);
    // Every disk takes 60 ms per fsync from now on (below the 100 ms election timeout here).
    for (const m of members) {
      const fh = (m.node as unknown as { wal: { fh: { datasync: () => Promise<void> } } }).wal.fh;
      const real = fh.datasync.bind(fh);
      fh.datasync = async () => {
        await new Promise((r) => setTimeout(r, 60));
        return real();
      };
    }
    const t0 = performance.now();
    const { index } = await leader.node.propose(Buffer.from('timed'));
    const ms = performance.now() - t0;
    console.log(`one commit with 60 ms fsyncs everywhere: ${ms.toFixed(0)} ms`);
    // Sent only after the leader's fsync, a follower's would follow it: 120 ms and more.
    expect(ms).toBeGreaterThanOrEqual(60);
    expect(ms).toBeLessThan(110);
    // Still acknowledged only once on the leader's disk and a majority's.
    expect(leader.node.persistedIndex).toBeGreaterThanOrEqual(index);
    expect(members.filter((m) => m.node.persistedIndex >= index).length).toBeGreaterThanOrEqual(2);
  }, 10_000);

  it('group-commits on the leader and on followers: fewer fsyncs than entries, and every acknowledged entry is durable', async () => {
    const { members } = await cluster(3);
    const leader = await leaderOf(members);
    const followers = members.filter((m) => m !== leader);
    await leader.node.propose(Buffer.from('warm-up'));
    await until('the followers to hold it', () => followers.every((f) => f.node.persistedIndex >= leader.node.persistedIndex), WAIT_MS, POLL_MS);
    const before = new Map(members.map((m) => [m.id, m.node.walStats]));
    const acked: { index: number; data: string }[] = [];
    const notDurable: string[] = [];
    const all: Promise<void>[] = [];
    // Waves of concurrent proposals, a millisecond apart: new ones keep arriving while fsyncs run.
    for (let w = 0; w < 40; w++) {
      for (let i = 0; i < 25; i++) {
        const data = `w${w}-${i}`;
        all.push(
          leader.node.propose(Buffer.from(data)).then(({ index }) => {
            acked.push({ index, data });
            // Acknowledged: on the leader's disk and on a majority's.
            const holders = members.filter((m) => m.node.persistedIndex >= index).map((m) => m.id);
            if (!holders.includes(leader.id) || holders.length < 2) notDurable.push(`${index} on ${holders.join(',')}`);
          }),
        );
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    await Promise.all(all);
    expect(notDurable).toEqual([]);
    await until('the followers to persist everything', () => followers.every((f) => f.node.persistedIndex >= leader.node.persistedIndex), WAIT_MS, POLL_MS);
    const perFsync: Record<string, string> = {};
    for (const m of members) {
      const a = m.node.walStats;
      const b = before.get(m.id)!;
      const entries = a.entries - b.entries;
      const fsyncs = a.fsyncs - b.fsyncs;
      perFsync[m === leader ? `leader ${m.id}` : `follower ${m.id}`] = `${entries} entries / ${fsyncs} fsyncs`;
      expect(entries).toBe(1000);
      expect(fsyncs).toBeGreaterThan(0);
      expect(fsyncs * 4).toBeLessThan(entries);
    }
    console.log(`group commit: ${JSON.stringify(perFsync)}`);

    // What was acknowledged is in the WAL files themselves, on the leader and on the followers.
    for (const m of members) await m.node.close();
    for (const m of members) {
      const { wal, records } = await Wal.open(path.join(m.dir, 'wal'));
      await wal.close();
      const onDisk = new Map<number, string>();
      for (const r of records) for (const e of decodeRecord(r.data).entries) onDisk.set(e.index, Buffer.from(e.data).toString());
      for (const { index, data } of acked) expect(onDisk.get(index), `${m.id} index ${index}`).toBe(data);
    }
  });
});

describe('RaftNode crash safety', () => {
  const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
  const compiled = path.join(repoRoot, 'dist', 'src', 'raft');

  /** The child runs the compiled node: it must exist and be newer than every source it comes from. */
  function compiledModule(): string {
    const entry = path.join(compiled, 'index.js');
    if (!existsSync(entry)) {
      throw new Error(`${entry} is missing: run \`npx tsc -p tsconfig.json\` before this test (it runs the compiled module in a child process)`);
    }
    const sources = readdirSync(path.join(repoRoot, 'src', 'raft'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'));
    for (const f of sources) {
      const src = path.join(repoRoot, 'src', 'raft', f);
      const out = path.join(compiled, f.replace(/\.ts$/, '.js'));
      if (!existsSync(out) || statSync(out).mtimeMs < statSync(src).mtimeMs) {
        throw new Error(`${out} is older than ${src}: run \`npx tsc -p tsconfig.json\` before this test`);
      }
    }
    return entry;
  }

  // A one-voter cluster (so an acknowledgement means "on this disk") with eight concurrent
  // proposers. Entry eN is the N-th proposal ever made; after a restart, numbering goes on from
  // what the node recovered.
  const childScript = (moduleUrl: string): string => `
import { MemNetwork, RaftNode } from ${JSON.stringify(moduleUrl)};

const items = [];
const sm = {
  apply(data) { items.push(Buffer.from(data).toString()); return items.length; },
  snapshot() { return Buffer.from(JSON.stringify(items)); },
  restore(data) { items.length = 0; for (const x of JSON.parse(Buffer.from(data).toString())) items.push(x); },
};
const node = await RaftNode.open({
  dir: process.argv[2], id: 'n1', transport: new MemNetwork().transport('n1'), sm,
  bootstrap: { voters: ['n1'], learners: [] }, tickMs: 10, electionTick: 10, heartbeatTick: 1,
  snapshotEvery: 100, keepBehind: 20,
});
while (!node.isLeader) await new Promise((r) => setTimeout(r, 10));
await node.readBarrier();
let next = items.length;
async function worker() {
  for (;;) {
    const data = 'e' + ++next; // propose() takes its place in the log now, in call order
    const { index } = await node.propose(Buffer.from(data));
    process.stdout.write('ack ' + index + ' ' + data + '\\n');
  }
}
for (let i = 0; i < 8; i++) worker().catch((err) => { console.error(err); process.exit(1); });
`;

  /** Runs the child until it has acknowledged `target` entries, then SIGKILLs it. */
  async function runAndKill(script: string, dataDir: string, target: number, acks: Map<string, number>): Promise<void> {
    const child = spawn(process.execPath, [script, dataDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let seen = 0;
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const lines = out.split('\n');
      out = lines.pop()!;
      for (const line of lines) {
        const m = /^ack (\d+) (e\d+)$/.exec(line);
        if (!m) continue;
        acks.set(m[2]!, Number(m[1]));
        if (++seen === target) child.kill('SIGKILL');
      }
    });
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((res) => child.on('close', (c, s) => res([c, s])));
    clearTimeout(timer);
    expect(signal, `child ended with code ${code}: ${err}`).toBe('SIGKILL');
    expect(seen, `child acknowledged only ${seen} entries before the timeout: ${err}`).toBeGreaterThanOrEqual(target);
  }

  it('keeps every acknowledged entry across SIGKILL, twice, while snapshots and compaction run', async () => {
    const work = await mkdtemp(path.join(os.tmpdir(), 'raftnode-crash-'));
    dirs.push(work);
    const script = path.join(work, 'child.mjs');
    await writeFile(script, childScript(pathToFileURL(compiledModule()).href));
    const dataDir = path.join(work, 'data');
    const acks = new Map<string, number>();

    await runAndKill(script, dataDir, 300, acks);
    await runAndKill(script, dataDir, 300, acks); // recovers from the first crash, then crashes again

    const after = await member(new MemNetwork(), 'n1', dataDir, { snapshotEvery: 100, keepBehind: 20 });
    const { node, sm } = after;
    await leaderOf([after]);
    await node.readBarrier();
    expect(acks.size).toBeGreaterThanOrEqual(600);
    // Prefix-consistent: entry i is exactly the i-th proposal, with no holes or reordering...
    expect(sm.items.every((v, i) => v === `e${i + 1}`)).toBe(true);
    // ...and every acknowledged entry is there.
    for (const data of acks.keys()) expect(sm.items[Number(data.slice(1)) - 1]).toBe(data);
    // Snapshots (not just the bootstrap one) and compaction happened while the child ran.
    expect(sm.restoredAt[0]).toBeGreaterThan(100);
    expect(Number((await readdir(path.join(dataDir, 'wal'))).sort()[0]!.replace('.wal', ''))).toBeGreaterThan(1);
  });
});

/** Snapshot transfers of all members (leadership may move on a loaded machine). */
function transfers(ms: Member[]): { succeeded: number; failed: number } {
  const all = ms.map((m) => m.node.snapshotTransfers);
  return { succeeded: all.reduce((a, t) => a + t.succeeded, 0), failed: all.reduce((a, t) => a + t.failed, 0) };
}

function big(i: number): string {
  return `op-${i}-${'x'.repeat(2000)}`;
}
