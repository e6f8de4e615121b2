import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobStore, HashMismatchError, ImageStore, blake3File } from '../../src/images/index.js';
import { startTestNode, type TestNode } from '../helpers/iroh.js';
import { workDir } from '../helpers/images-cluster.js';

// The image store on an in-process Iroh node: import (stream, pin), pieces and collection, the
// file for hypervisors checked as it is written, removal that keeps pieces another image shares,
// and images stored whole by an older node converted into pieces on first use.

const KiB = 1024;
const PIECE = 64 * KiB;

let node: TestNode;
let work: { dir: string; remove: () => Promise<void> };
let store: ImageStore;

beforeAll(async () => {
  node = await startTestNode();
  work = await workDir('blixard-store-');
  store = await ImageStore.open({ dir: path.join(work.dir, 'images'), iroh: node.iroh, pieceSize: PIECE });
});

afterAll(async () => {
  await node?.iroh.node.shutdown().catch(() => {});
  await work?.remove();
});

async function file(name: string, bytes: Buffer): Promise<{ file: string; hash: string }> {
  const f = path.join(work.dir, name);
  await writeFile(f, bytes);
  return { file: f, hash: (await blake3File(f)).hash };
}

describe('ImageStore', () => {
  it('imports a stream as pieces and a collection; the file it writes out is what b3sum says', async () => {
    const bytes = randomBytes(5 * PIECE + 123);
    const { hash } = await file('a.bin', bytes);
    const seen: string[] = [];
    const off = store.subscribe((h, img) => seen.push(`${img ? 'add' : 'remove'} ${h}`));
    const r = await store.importStream(hash, Readable.from([bytes.subarray(0, 1000), bytes.subarray(1000)]));
    off();
    expect(r).toMatchObject({ hash, size: bytes.length, pieces: 6, existed: false });
    expect(seen).toEqual([`add ${hash}`]);
    const m = (await store.manifest(hash))!;
    expect(m.pieces).toHaveLength(6);
    expect(await store.has(hash)).toBe(true);
    const out = await store.pathFor(hash);
    expect((await blake3File(out)).hash).toBe(hash);
    // Importing it again stores nothing new.
    expect((await store.importStream(hash, Readable.from([bytes]))).existed).toBe(true);
  });

  it('a pin that does not match stores nothing', async () => {
    const bytes = randomBytes(3 * PIECE);
    const before = store.list().length;
    const err = await store.importStream(`blake3:${'0'.repeat(64)}`, Readable.from([bytes])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HashMismatchError);
    expect(store.list()).toHaveLength(before);
  });

  it('removing an image keeps the pieces another image shares', async () => {
    const shared = randomBytes(2 * PIECE);
    const one = await file('one.bin', Buffer.concat([shared, randomBytes(PIECE)]));
    const two = await file('two.bin', Buffer.concat([shared, randomBytes(PIECE)]));
    await store.importFile(one.file, one.hash);
    await store.importFile(two.file, two.hash);
    const m1 = (await store.manifest(one.hash))!;
    const m2 = (await store.manifest(two.hash))!;
    expect(m1.pieces.slice(0, 2)).toEqual(m2.pieces.slice(0, 2));
    expect(await store.remove(one.hash)).toBe(true);
    expect(await store.blobs.isComplete(m1.pieces[2]!)).toBe(false); // its own piece: gone
    expect(await store.blobs.isComplete(m1.pieces[0]!)).toBe(true); // shared: kept
    expect(await store.has(one.hash)).toBe(false);
    expect((await blake3File(await store.pathFor(two.hash))).hash).toBe(two.hash);
  });

  it('an image in use by an operation is not removed unless forced', async () => {
    const x = await file('x.bin', randomBytes(PIECE));
    await store.importFile(x.file);
    const release = store.hold(x.hash);
    expect(await store.remove(x.hash)).toBe(false);
    release();
    expect(await store.remove(x.hash)).toBe(true);
  });

  it('an image an older node stored whole is converted into pieces on first use', async () => {
    const blobs = await BlobStore.open(node.iroh, path.join(work.dir, 'incoming'));
    const bytes = randomBytes(4 * PIECE + 7);
    const { hash } = await file('legacy.bin', bytes);
    await blobs.importStream(hash, Readable.from([bytes]));
    expect(store.hasComplete(hash)).toBe(false);
    expect(await store.has(hash)).toBe(true);
    expect(store.get(hash)?.pieceCount).toBe(5);
    expect(await blobs.has(hash)).toBe(false); // the whole blob is not kept twice
    expect((await blake3File(await store.pathFor(hash))).hash).toBe(hash);
  });

  it('the index survives a restart', async () => {
    await store.flush();
    const again = await ImageStore.open({ dir: path.join(work.dir, 'images'), iroh: node.iroh, pieceSize: PIECE });
    expect(again.list().map((i) => i.hash)).toEqual(store.list().map((i) => i.hash));
  });
});
