import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { P2PNodeProcess, requireP2PBuild, waitUntil } from '../test/helpers/p2p-cluster.js';
import { pct, printTable, type Row } from './table.js';

// Issue 4's numbers, between real Iroh nodes in separate processes on loopback (each a persistent
// node, see test/helpers/p2p-node.ts):
//   a leader's write to the cluster document until 1 and until all 4 other nodes see it in their
//     view (p50/p99 over 200 writes)                                 target p50 < 200 ms
//   a fresh node joining a document of 10,000 entries until its view holds them all
//                                                                     target < 10 s
//   blob transfer between two nodes (persistent stores), ours (downloadBlob: probe, progress,
//     status check) next to iroh-blobs' own download in the same run  target >= 90% of raw
// Standalone: `npx tsc -p tsconfig.json && node dist/bench/p2p.js`.

const WRITES = 200;
const DOC_ENTRIES = 10_000;
const BLOB_MB = 200;

interface DocTickets {
  docId: string;
  read: string;
  write: string;
}

/** A file of `mb` MiB whose content differs per `seed` (random blocks; cheap to make). */
async function makeFile(file: string, mb: number, seed: number): Promise<void> {
  const block = randomBytes(1 << 20);
  const fh = await open(file, 'w');
  try {
    for (let i = 0; i < mb; i++) {
      block.writeUInt32BE(seed, 0);
      block.writeUInt32BE(i, 4);
      await fh.write(block);
    }
  } finally {
    await fh.close();
  }
}

export async function p2pBench(): Promise<Row[]> {
  requireP2PBuild();
  const work = await mkdtemp(path.join(os.tmpdir(), 'blixard-p2p-bench-'));
  const rows: Row[] = [];
  const nodes: P2PNodeProcess[] = [];
  try {
    const t0 = performance.now();
    const names = ['leader', 'n1', 'n2', 'n3', 'n4'];
    nodes.push(...(await Promise.all(names.map((n) => P2PNodeProcess.start(n, { dir: path.join(work, n), pingIntervalMs: 1000, deadAfterMs: 5000 })))));
    const startMs = performance.now() - t0;
    const [leader, ...followers] = nodes as [P2PNodeProcess, ...P2PNodeProcess[]];
    const authors = Object.fromEntries(nodes.map((n) => [n.nodeId, n.author]));
    await Promise.all(
      nodes.map(async (n) => {
        const others = nodes.filter((x) => x !== n);
        await n.call('allow', { nodeIds: others.map((x) => x.nodeId) });
        await n.call('authors', { map: authors });
        await n.call('peers', { list: others.map((x) => ({ ...x.addr(), name: x.name })) });
      }),
    );
    rows.push({ name: '5 node processes started in parallel (Iroh bound, ready)', value: startMs, unit: 'ms', target: '' });

    // 1. Write to seen: the leader publishes one new key at a time (ClusterDocPublisher, the
    //    value stamped with the leader's wall clock right before the write); each follower's view
    //    notes when the key shows up in it.
    const cluster = await leader.call<DocTickets>('docCreate', { name: 'cluster', kind: 'cluster' });
    await Promise.all(followers.map((n) => n.call('docJoin', { name: 'cluster', kind: 'cluster', docId: cluster.docId, ticket: cluster.read })));
    for (let i = 0; i < 20; i++) await leader.call('publish', { doc: 'cluster', entries: { [`warm/${i}`]: { i } }, rev: i + 1, merge: true });
    await Promise.all(followers.map((n) => waitUntil(async () => (await n.call<{ rev: number }>('get', { doc: 'cluster', key: 'warm/19' })).rev === 20, 20_000, `${n.name} warmed up`)));
    await Promise.all(followers.map((n) => n.call('watch', { doc: 'cluster', prefix: 'lat/', field: 't' })));
    for (let i = 0; i < WRITES; i++) {
      await leader.call('publish', { doc: 'cluster', entries: { [`lat/${String(i).padStart(4, '0')}`]: { i } }, rev: 100 + i, merge: true, stamp: 't' });
      await new Promise((r) => setTimeout(r, 10));
    }
    const seen: Record<string, number>[] = [];
    await waitUntil(
      async () => {
        seen.length = 0;
        for (const n of followers) seen.push((await n.call<{ seen: Record<string, number> }>('watched', { doc: 'cluster' })).seen);
        return seen.every((s) => Object.keys(s).length === WRITES);
      },
      30_000,
      'every follower to see every write',
      200,
    );
    const first: number[] = [];
    const all: number[] = [];
    for (const key of Object.keys(seen[0]!)) {
      const lat = seen.map((s) => s[key]!);
      first.push(Math.min(...lat));
      all.push(Math.max(...lat));
    }
    rows.push({ name: `cluster doc: leader write -> seen by 1 of 4 nodes, p50 (${WRITES} writes)`, value: pct(first, 50), unit: 'ms', target: '< 200 ms' });
    rows.push({ name: 'cluster doc: leader write -> seen by 1 of 4 nodes, p99', value: pct(first, 99), unit: 'ms', target: '' });
    rows.push({ name: 'cluster doc: leader write -> seen by all 4 nodes, p50', value: pct(all, 50), unit: 'ms', target: '< 200 ms' });
    rows.push({ name: 'cluster doc: leader write -> seen by all 4 nodes, p99', value: pct(all, 99), unit: 'ms', target: '' });

    // 2. A fresh node (new data dir, never joined) syncs a document of 10,000 entries.
    const big = await leader.call<DocTickets>('docCreate', { name: 'big', kind: 'cluster' });
    const entries: Record<string, unknown> = {};
    // Distinct values, as real resources are (Iroh fetches each distinct content once).
    for (let i = 0; i < DOC_ENTRIES; i++) {
      const name = `vm-${String(i).padStart(5, '0')}`;
      entries[`desired/VirtualMachine/${name}`] = { metadata: { name, labels: { app: 'bench', shard: `s${i % 10}` } }, spec: { image: 'base', vcpus: 1, memoryMiB: 256 } };
    }
    const pubMs = (await leader.call<{ ms: number }>('publish', { doc: 'big', entries, rev: 1 }, 120_000)).ms;
    rows.push({ name: `leader publishes ${DOC_ENTRIES} entries (for scale)`, value: pubMs, unit: 'ms', target: '' });
    const t1 = performance.now();
    const fresh = await P2PNodeProcess.start('fresh', { dir: path.join(work, 'fresh'), pingIntervalMs: 1000, deadAfterMs: 5000 });
    nodes.push(fresh);
    await fresh.call('allow', { nodeIds: [leader.nodeId] });
    await fresh.call('docJoin', { name: 'big', kind: 'cluster', docId: big.docId, ticket: big.read });
    const synced = await fresh.call<{ ms: number; size: number }>('waitCount', { doc: 'big', prefix: '', count: DOC_ENTRIES, timeoutMs: 120_000 }, 130_000);
    rows.push({ name: `fresh node: join -> all ${DOC_ENTRIES} entries in its view`, value: synced.ms, unit: 'ms', target: '< 10000 ms' });
    rows.push({ name: `fresh node: process start -> all ${DOC_ENTRIES} entries in its view`, value: performance.now() - t1, unit: 'ms', target: '' });

    // 3. Blob transfer, ours next to iroh-blobs alone, alternating (the receiver deletes the blob
    //    between rounds), so neither always goes first; medians of 3 each.
    const receiver = followers[0]!;
    const file = path.join(work, 'blob.bin');
    await makeFile(file, BLOB_MB, 1);
    const { hash } = await leader.call<{ hash: string }>('share', { file }, 120_000);
    await rm(file); // the store has its own copy
    const ms: Record<'raw' | 'ours', number[]> = { raw: [], ours: [] };
    for (const kind of ['raw', 'ours', 'ours', 'raw', 'raw', 'ours'] as const) {
      const r = await receiver.call<{ ms: number }>('download', { hash, providers: [leader.addr()], raw: kind === 'raw' }, 300_000);
      ms[kind].push(r.ms);
      const after = await receiver.call<{ status: string }>('deleteBlob', { hash });
      if (after.status !== 'NotFound') throw new Error(`the receiver still holds the blob (${after.status})`);
    }
    const raw = BLOB_MB / (pct(ms.raw, 50) / 1000);
    const ours = BLOB_MB / (pct(ms.ours, 50) / 1000);
    rows.push({ name: `blob ${BLOB_MB} MiB between two nodes: downloadBlob (median of 3)`, value: ours, unit: 'MiB/s', target: '' });
    rows.push({ name: `blob ${BLOB_MB} MiB between two nodes: raw iroh-blobs download (median of 3)`, value: raw, unit: 'MiB/s', target: '' });
    rows.push({ name: 'blob transfer: downloadBlob / raw iroh-blobs', value: (100 * ours) / raw, unit: '%', target: '>= 90 %' });
  } finally {
    await Promise.all(nodes.map((n) => n.stop().catch(() => {})));
    await rm(work, { recursive: true, force: true });
  }
  return rows;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  printTable('P2P on Iroh: documents, transfers (issue 4)', await p2pBench());
}
