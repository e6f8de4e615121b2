import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, randomFile, startImagesNode, workDir, type ImagesNode } from '../helpers/images-cluster.js';
import { until } from '../helpers/until.js';

// The image cache on a real node in its own process: past --image-cache-size, images no VM on the
// node needs go, least recently used first, with their pieces, collection and file, and the node
// stops publishing them; an image in use never goes, even when the cache stays over its limit; the
// file written out for hypervisors goes as soon as no VM needs it (the image stays cached).

const POLL_MS = 50;
const MiB = 1024 * 1024;
const PIECE = 1 * MiB;

let work: { dir: string; remove: () => Promise<void> };
let N: ImagesNode, W: ImagesNode;
const imgs: string[] = [];

beforeAll(async () => {
  work = await workDir('blixard-cache-');
  const nodes = await Promise.all(['N', 'W'].map((n) => startImagesNode(n, { dir: path.join(work.dir, n), pieceSize: PIECE })));
  [N, W] = [nodes[0]!, nodes[1]!];
  await connect(nodes);
  for (let i = 0; i < 3; i++) {
    const file = path.join(work.dir, `img${i}.bin`);
    await randomFile(file, 8 * MiB);
    imgs.push((await N.call<{ hash: string }>('import', { file })).hash);
    await new Promise((r) => setTimeout(r, 20)); // distinct last-use times
  }
}, 60_000);

afterAll(async () => {
  await Promise.all([N, W].map((n) => n?.stop()));
  await work?.remove();
});

interface Gc {
  evicted: string[];
  droppedFiles: string[];
  before: number;
  after: number;
  over: number;
}

const has = async (h: string) => (await N.call<{ has: boolean }>('has', { hash: h })).has;

describe('image cache', () => {
  it('past its limit, removes the least recently used image no VM needs, with its pieces, and withdraws it', async () => {
    const [img0, img1, img2] = imgs as [string, string, string];
    await N.call('path', { hash: img0 }); // a VM here runs img0: its file is written out
    const pieces1 = (await N.call<{ manifest: { pieces: string[]; collection: string } }>('manifest', { hash: img1 })).manifest;
    await until('W to see img1', async () => (await W.call<{ holdings: unknown[] }>('holdings', { hash: img1 })).holdings.length === 1, 10_000, POLL_MS);

    // 24 MiB of pieces + 8 MiB file of img0 (in use) = 32 MiB; limit 26 MiB: img1 (oldest unused) goes.
    const gc = await N.call<Gc>('gc', { limit: 26 * MiB, inUse: [img0] });
    expect(gc.evicted).toEqual([img1]);
    expect(gc.before).toBe(32 * MiB);
    expect(gc.after).toBe(24 * MiB);
    expect(await has(img1)).toBe(false);
    expect(await has(img0)).toBe(true);
    expect(await has(img2)).toBe(true);
    // Its blobs are gone from the store, and the node no longer says it holds it.
    const st = await N.call<{ complete: boolean[] }>('blobs', { hexes: [pieces1.collection, ...pieces1.pieces] });
    expect(st.complete.every((c) => !c)).toBe(true);
    await until('W to see img1 withdrawn', async () => (await W.call<{ holdings: unknown[] }>('holdings', { hash: img1 })).holdings.length === 0, 10_000, POLL_MS);
  });

  it('never removes an image in use, even over the limit', async () => {
    const [img0, , img2] = imgs as [string, string, string];
    const gc = await N.call<Gc>('gc', { limit: 4 * MiB, inUse: [img0] });
    expect(gc.evicted).toEqual([img2]);
    expect(gc.over).toBe(12 * MiB); // img0: 8 MiB pieces + 8 MiB file, limit 4 MiB
    expect(await has(img0)).toBe(true);
    expect((await N.call<{ file: number }>('has', { hash: img0 })).file).toBe(8 * MiB);
  });

  it('drops the file written out for hypervisors once no VM needs it; the image stays cached', async () => {
    const [img0] = imgs as [string];
    const gc = await N.call<Gc>('gc', { limit: null, inUse: [] });
    expect(gc.droppedFiles).toEqual([img0]);
    expect(gc.evicted).toEqual([]);
    const h = await N.call<{ has: boolean; file: number }>('has', { hash: img0 });
    expect(h).toMatchObject({ has: true, file: 0 });
    // Written out again (and checked again) when a VM needs it.
    expect((await N.call<{ file: string }>('path', { hash: img0 })).file).toMatch(/[0-9a-f]{64}$/);
  });
});
