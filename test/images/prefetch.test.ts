import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blake3File } from '../../src/images/index.js';
import { addNode, connect, randomFile, startImagesNode, workDir, type ImagesNode, type StatusDoc } from '../helpers/images-cluster.js';
import { until } from '../helpers/until.js';

// Images over Iroh blobs between real nodes, each in its own process (issue 6): an image pushed
// on A is prefetched by B, then by C from A and B at once; a provider killed in the middle of a
// transfer leaves the downloader finishing from the other, keeping what it got; a downloader
// killed in the middle resumes without fetching again what it has; the rate limit holds.

const POLL_MS = 50;
const MiB = 1024 * 1024;
const PIECE = 4 * MiB;
const engine = { stallMs: 1500, suspectMs: 3000 };

interface Stats {
  bytesReceived: number;
  perProvider: Record<string, { bytes: number; pieces: number }>;
  piecesFetched: number;
  failures: number;
  piecesLocal: number;
  stalls: number;
  hedges: number;
  maxProvidersAtOnce: number;
  elapsedMs: number;
}
interface Pulled {
  stats: Stats | null;
  ms: number;
  file: string | null;
  verifyTailMs: number;
}

let work: { dir: string; remove: () => Promise<void> };
let A: ImagesNode, B: ImagesNode, C: ImagesNode;
let image: { hash: string; size: number; file: string };
let doc: StatusDoc;

beforeAll(async () => {
  work = await workDir('blixard-images-');
  const nodes = await Promise.all(['A', 'B', 'C'].map((n) => startImagesNode(n, { dir: path.join(work.dir, n), pieceSize: PIECE, engine })));
  [A, B, C] = [nodes[0]!, nodes[1]!, nodes[2]!];
  doc = await connect([A, B, C]);
  const file = path.join(work.dir, 'image.bin');
  await randomFile(file, 96 * MiB);
  image = { ...(await blake3File(file)), file };
}, 60_000);

afterAll(async () => {
  await Promise.all([A, B, C].map((n) => n?.stop()));
  await work?.remove();
});


describe('prefetch between nodes', () => {
  it('an image pushed on A is prefetched by B, then by C from A and B at once', async () => {
    const pushed = await A.call<{ hash: string; pieces: number; existed: boolean }>('import', { file: image.file });
    expect(pushed.hash).toBe(image.hash);
    expect(pushed.pieces).toBe(24);

    const b = await B.call<Pulled>('pull', { hash: image.hash });
    expect(Object.keys(b.stats!.perProvider)).toEqual([A.nodeId]);
    expect(b.stats!.perProvider[A.nodeId]!.pieces).toBe(24);

    // C learns from the status document that A and B hold it whole, and takes pieces from both.
    const holders = async () => (await C.call<{ holdings: { nodeId: string; have: string | number }[] }>('holdings', { hash: image.hash })).holdings.filter((h) => h.have === 'all').map((h) => h.nodeId).sort();
    await until('C to see B hold the image', async () => (await holders()).length === 2, 10_000, POLL_MS);
    expect(await holders()).toEqual([A.nodeId, B.nodeId].sort());
    const c = await C.call<Pulled>('pull', { hash: image.hash });
    const per = c.stats!.perProvider;
    console.log(`C: ${Math.round(c.ms)} ms, from A ${per[A.nodeId]?.pieces} pieces, from B ${per[B.nodeId]?.pieces}, verify tail ${Math.round(c.verifyTailMs)} ms`);
    expect(per[A.nodeId]!.pieces).toBeGreaterThanOrEqual(4);
    expect(per[B.nodeId]!.pieces).toBeGreaterThanOrEqual(4);
    expect(per[A.nodeId]!.pieces + per[B.nodeId]!.pieces).toBe(24);
    expect(c.stats!.maxProvidersAtOnce).toBe(2);
    // What C wrote out for hypervisors is what b3sum says.
    expect((await blake3File(c.file!)).hash).toBe(image.hash);
    const has = await C.call<{ has: boolean; state: string; pieces: number }>('has', { hash: image.hash });
    expect(has).toMatchObject({ has: true, state: 'complete', pieces: 24 });
  });

  it('a provider killed in the middle of a transfer: the downloader finishes from the other, keeping what it got', async () => {
    // D fetches slowly (rate limit) from A, B and C; B is killed once it has sent a few pieces.
    const D = await startImagesNode('D', { dir: path.join(work.dir, 'D'), pieceSize: PIECE, engine, rate: 24 * MiB });
    await addNode([A, B, C], D, doc);
    // D must know B holds the image before it starts: otherwise, on a loaded machine, its status
    // view learns of B late, B gets fewer than the 3 pieces that trigger the kill, and the test
    // tests nothing (seen once in CI).
    const holders = async () => (await D.call<{ holdings: { nodeId: string; have: string | number }[] }>('holdings', { hash: image.hash })).holdings.filter((h) => h.have === 'all').length;
    await until('D to see A, B and C hold the image', async () => (await holders()) === 3, 10_000, POLL_MS);
    let killedAt: number | null = null;
    let killing: Promise<void> | null = null;
    const pulling = D.call<Pulled>('pull', { hash: image.hash }, (p) => {
      const fromB = (p.perProvider as Record<string, number> | undefined)?.[B.nodeId] ?? 0;
      if (killedAt === null && fromB >= 3 * PIECE) {
        killedAt = performance.now();
        killing = B.kill();
      }
    });
    const d = await pulling;
    await killing;
    expect(killedAt).not.toBeNull();
    const s = d.stats!;
    const fromB = s.perProvider[B.nodeId]!;
    const others = Object.entries(s.perProvider).filter(([id]) => id !== B.nodeId);
    console.log(`D: ${Math.round(d.ms)} ms; B killed after it sent ${fromB.pieces} pieces; ${others.map(([id, x]) => `${id === A.nodeId ? 'A' : 'C'} sent ${x.pieces}`).join(', ')}; stalls ${s.stalls}, hedges ${s.hedges}, bytes ${s.bytesReceived}`);
    // The pieces B sent before it died are kept, not fetched again; the others come from A and C.
    expect(fromB.pieces).toBeGreaterThanOrEqual(2);
    expect(fromB.pieces + others.reduce((n, [, x]) => n + x.pieces, 0)).toBe(24);
    expect(others.every(([, x]) => x.pieces > 0)).toBe(true);
    // The pieces in flight from B moved elsewhere after the watchdog (a hedge, or a retry once
    // Iroh reported the attempt aborted) or at once (the dead process's closed port made its
    // attempts fail), not after QUIC's 30 s idle timeout.
    expect(s.stalls + s.failures).toBeGreaterThanOrEqual(1);
    expect(performance.now() - killedAt!).toBeLessThan(20_000);
    // Duplicates are bounded: at most the pieces that were in flight from B.
    expect(s.bytesReceived).toBeLessThan(image.size * 1.03 + 3 * PIECE);
    expect((await blake3File(d.file!)).hash).toBe(image.hash);
    await D.stop();
  });
});

describe('resume and rate limit', () => {
  it('a downloader killed in the middle resumes without fetching again what it has', async () => {
    const dir = path.join(work.dir, 'E');
    let E = await startImagesNode('E', { dir, pieceSize: PIECE, engine, rate: 24 * MiB });
    await addNode([A, C], E, doc);
    let pieces = 0;
    const first = E.send('pull', { hash: image.hash }, (p) => {
      pieces = Number(p.pieces);
      if (pieces >= 12) void E.kill();
    });
    expect((await first).ok).toBe(false);
    // Started again on the same data dir: same key, same document, same pieces.
    E = await startImagesNode('E', { dir, pieceSize: PIECE, engine });
    const held = await E.call<{ pieces: number; has: boolean; state: string }>('has', { hash: image.hash });
    expect(held.has).toBe(false);
    expect(held.state).toBe('partial');
    // (the store commits in batches: the last pieces before a SIGKILL may have to come again)
    expect(held.pieces).toBeGreaterThanOrEqual(6);
    const again = await E.call<Pulled>('pull', { hash: image.hash });
    const s = again.stats!;
    console.log(`E: ${held.pieces} pieces survived the kill; the second pull fetched ${s.piecesFetched} (${s.bytesReceived} bytes)`);
    expect(s.piecesLocal).toBe(held.pieces);
    expect(s.piecesFetched).toBe(24 - held.pieces);
    // Only what was missing crossed the network (plus iroh's verification data and a partial piece or two).
    expect(s.bytesReceived).toBeLessThan((24 - held.pieces) * PIECE * 1.01 + 2 * PIECE);
    expect((await blake3File(again.file!)).hash).toBe(image.hash);
    await E.stop();
  });

  it('the rate limit holds within a generous bound', async () => {
    const rate = 16 * MiB;
    const F = await startImagesNode('F', { dir: path.join(work.dir, 'F'), pieceSize: PIECE, engine, rate });
    await addNode([A, C], F, doc);
    const r = await F.call<Pulled>('pull', { hash: image.hash, materialize: false });
    const achieved = image.size / (r.stats!.elapsedMs / 1000);
    console.log(`rate limit ${rate / MiB} MiB/s: achieved ${(achieved / MiB).toFixed(1)} MiB/s over ${Math.round(r.stats!.elapsedMs)} ms`);
    expect(achieved).toBeLessThan(rate * 1.25);
    expect(achieved).toBeGreaterThan(rate * 0.5);
    await F.stop();
  });
});
