import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blake3File } from '../../src/images/index.js';
import { connect, randomFile, startImagesNode, workDir, type ImagesNode } from '../helpers/images-cluster.js';
import { until } from '../helpers/until.js';

// An image whose bytes do not match its hash is never used (SPEC section 7), between real nodes
// in their own processes: a push whose `hash:` pin does not match stores nothing; pieces a node
// publishes under an image's hash that do not make that image are refused and removed; bytes
// damaged on a provider's disk are refused piece by piece and fetched from another provider.

const POLL_MS = 50;
const MiB = 1024 * 1024;
const PIECE = 1 * MiB;
const engine = { stallMs: 1500, suspectMs: 1000, unavailableTimeoutMs: 4000 };

let work: { dir: string; remove: () => Promise<void> };
let A: ImagesNode, B: ImagesNode, L: ImagesNode, D: ImagesNode;
let good: { hash: string; size: number; file: string };
let other: { hash: string; size: number; file: string };

beforeAll(async () => {
  work = await workDir('blixard-refuse-');
  const nodes = await Promise.all(['A', 'B', 'L', 'D'].map((n) => startImagesNode(n, { dir: path.join(work.dir, n), pieceSize: PIECE, engine, findTimeoutMs: 3000 })));
  [A, B, L, D] = [nodes[0]!, nodes[1]!, nodes[2]!, nodes[3]!];
  await connect(nodes);
  for (const [name, size] of [
    ['good.bin', 12 * MiB],
    ['other.bin', 12 * MiB],
  ] as const) {
    const file = path.join(work.dir, name);
    await randomFile(file, size);
    const d = { ...(await blake3File(file)), file };
    if (name === 'good.bin') good = d;
    else other = d;
  }
}, 60_000);

afterAll(async () => {
  await Promise.all([A, B, L, D].map((n) => n?.stop()));
  await work?.remove();
});

interface Has {
  has: boolean;
  state: string | null;
  pieces: number;
}

describe('images that do not match their hash are refused', () => {
  it('a push whose hash pin does not match stores nothing', async () => {
    const r = await A.send('import', { file: good.file, expected: other.hash });
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/does not match/);
    expect(r.error).toContain(good.hash);
    expect((await A.call<{ images: unknown[] }>('list')).images).toEqual([]);
    expect((await A.call<Has>('has', { hash: good.hash })).has).toBe(false);
    expect((await A.call<Has>('has', { hash: other.hash })).has).toBe(false);
  });

  it('pieces a node publishes under a hash they do not make are refused, and nothing is kept', async () => {
    // L says it holds `good`, but its collection is the pieces of `other`.
    await L.call('forge', { file: other.file, claim: good.hash });
    await until('D to see the forged record', async () => (await D.call<{ holdings: unknown[] }>('holdings', { hash: good.hash })).holdings.length === 1, 10_000, POLL_MS);
    const r = await D.send('pull', { hash: good.hash });
    expect(r.ok).toBe(false);
    expect(r.name).toBe('ImageRefusedError');
    expect(r.error).toContain(`make ${other.hash}`);
    const has = await D.call<Has>('has', { hash: good.hash });
    expect(has).toMatchObject({ has: false, state: null, pieces: 0 });
    expect((await D.call<{ images: unknown[] }>('list')).images).toEqual([]);
    // D no longer says it fetches the image.
    await until('D to withdraw its record', async () => (await A.call<{ holdings: { nodeId: string }[] }>('holdings', { hash: good.hash })).holdings.every((h) => h.nodeId !== D.nodeId), 5_000, POLL_MS);
  });

  it('bytes damaged on a provider are refused; the piece comes from another provider', async () => {
    await A.call('import', { file: good.file });
    await A.call('corrupt-piece', { hash: good.hash, index: 3 });
    // Only A (damaged) and L (lying) publish it: D cannot make the image, and keeps nothing usable.
    const r = await D.send('pull', { hash: good.hash });
    expect(r.ok).toBe(false);
    expect((await D.call<Has>('has', { hash: good.hash })).has).toBe(false);
    // B gets a good copy (from the same bytes), and D finishes from it, keeping what it had.
    await B.call('import', { file: good.file });
    await until('D to see B', async () => (await D.call<{ holdings: { nodeId: string; have: unknown }[] }>('holdings', { hash: good.hash })).holdings.some((h) => h.nodeId === B.nodeId && h.have === 'all'), 10_000, POLL_MS);
    const ok = await D.call<{ stats: { perProvider: Record<string, { pieces: number }>; piecesLocal: number }; file: string }>('pull', { hash: good.hash });
    expect(ok.stats.perProvider[B.nodeId]!.pieces).toBeGreaterThanOrEqual(1);
    expect((await blake3File(ok.file)).hash).toBe(good.hash);
  });
});
