import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readLatestSnapshot, writeSnapshot } from './snapshot.js';

let root: string;
let dir: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'blixard-snap-'));
  dir = join(root, 'snap');
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);
const nameOf = (term: number, index: number): string =>
  `snap-${String(term).padStart(16, '0')}-${String(index).padStart(16, '0')}.snap`;

async function flipByte(file: string, at: number, mask: number): Promise<void> {
  const buf = await readFile(file);
  buf[at] = buf[at]! ^ mask;
  await writeFile(file, buf);
}

async function readWithWarnings() {
  const warnings: string[] = [];
  const snap = await readLatestSnapshot(dir, (m) => warnings.push(m));
  return { snap, warnings };
}

describe('snapshots', () => {
  it('writes and reads back meta and data', async () => {
    await writeSnapshot(dir, { term: 1, index: 42 }, bytes('state at 42'));
    expect(await readdir(dir)).toEqual([nameOf(1, 42)]);
    const { snap, warnings } = await readWithWarnings();
    expect(snap?.meta).toEqual({ term: 1, index: 42 });
    expect(text(snap!.data)).toBe('state at 42');
    expect(warnings).toEqual([]);
  });

  it('round-trips empty and large data', async () => {
    await writeSnapshot(dir, { term: 3, index: 7 }, new Uint8Array(0));
    expect((await readLatestSnapshot(dir))!.data).toHaveLength(0);
    const big = new Uint8Array(3 * 1024 * 1024).map((_, i) => (i * 31) & 0xff);
    await writeSnapshot(dir, { term: 3, index: 8 }, big);
    const snap = await readLatestSnapshot(dir);
    expect(snap?.meta.index).toBe(8);
    expect(Buffer.from(snap!.data).equals(Buffer.from(big))).toBe(true);
  });

  it('returns null for a missing or empty directory', async () => {
    expect(await readLatestSnapshot(join(root, 'nope'))).toBeNull();
    await writeSnapshot(dir, { term: 1, index: 1 }, bytes('x'));
    await rm(join(dir, nameOf(1, 1)));
    expect(await readLatestSnapshot(dir)).toBeNull();
  });

  it('keeps only the newest two', async () => {
    for (const index of [10, 20, 30, 40]) await writeSnapshot(dir, { term: 1, index }, bytes(`at ${index}`));
    expect((await readdir(dir)).sort()).toEqual([nameOf(1, 30), nameOf(1, 40)]);
    expect(text((await readLatestSnapshot(dir))!.data)).toBe('at 40');
  });

  it('orders by term, then index', async () => {
    await writeSnapshot(dir, { term: 2, index: 5 }, bytes('term 2'));
    await writeSnapshot(dir, { term: 1, index: 9 }, bytes('term 1'));
    expect((await readLatestSnapshot(dir))!.meta).toEqual({ term: 2, index: 5 });
  });

  it('falls back to the older snapshot when the newest has a flipped data byte', async () => {
    await writeSnapshot(dir, { term: 1, index: 10 }, bytes('older state'));
    await writeSnapshot(dir, { term: 1, index: 20 }, bytes('newer state'));
    const newest = join(dir, nameOf(1, 20));
    await flipByte(newest, (await readFile(newest)).length - 2, 0x01);

    const { snap, warnings } = await readWithWarnings();
    expect(snap?.meta).toEqual({ term: 1, index: 10 });
    expect(text(snap!.data)).toBe('older state');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(newest);
    expect(warnings[0]).toContain('bad data checksum');
    // Moved aside so that it is neither read again nor counted among the two kept.
    expect((await readdir(dir)).sort()).toEqual([nameOf(1, 10), `${nameOf(1, 20)}.broken`]);
  });

  it('falls back when the newest is truncated or has a damaged header', async () => {
    await writeSnapshot(dir, { term: 1, index: 1 }, bytes('one'));
    await writeSnapshot(dir, { term: 1, index: 2 }, bytes('two'));
    await writeSnapshot(dir, { term: 1, index: 3 }, bytes('three'));
    // Only 2 and 3 are kept; damage both in different ways.
    await truncate(join(dir, nameOf(1, 3)), 10);
    await flipByte(join(dir, nameOf(1, 2)), 20, 0xff); // inside the index field

    const { snap, warnings } = await readWithWarnings();
    expect(snap).toBeNull();
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(/shorter than the header/);
    expect(warnings[1]).toMatch(/bad header checksum/);
  });

  it('ignores and removes leftover temp files', async () => {
    await writeSnapshot(dir, { term: 1, index: 5 }, bytes('good'));
    const leftover = `${nameOf(1, 9)}.tmp`;
    await writeFile(join(dir, leftover), bytes('half-written garbage'));

    const { snap, warnings } = await readWithWarnings();
    expect(snap?.meta.index).toBe(5);
    expect(text(snap!.data)).toBe('good');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(leftover);
    expect(await readdir(dir)).toEqual([nameOf(1, 5)]);
  });

  it('rejects invalid meta', async () => {
    await expect(writeSnapshot(dir, { term: 1, index: -1 }, bytes('x'))).rejects.toBeInstanceOf(RangeError);
    await expect(writeSnapshot(dir, { term: 1.5, index: 1 }, bytes('x'))).rejects.toBeInstanceOf(RangeError);
  });
});
