import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { execFileSync } from 'node:child_process';
import { appendFile, mkdtemp, readdir, readFile, rm, stat, statfs, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FileHandle } from 'node:fs/promises';
import { Wal, WalCorruptionError } from './wal.js';

const HEADER = 12;
const SEG1 = '0000000000000001.wal';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'blixard-wal-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);

async function openWal(opts: Parameters<typeof Wal.open>[1] = {}) {
  const warnings: string[] = [];
  const r = await Wal.open(dir, { ...opts, onWarning: (m) => warnings.push(m) });
  return { ...r, warnings, texts: r.records.map((x) => text(x.data)) };
}

/** Writes records r0..r(n-1) and returns the byte offset of each record in the segment. */
async function writeRecords(n: number, size = 20): Promise<number[]> {
  const { wal } = await Wal.open(dir);
  const offsets: number[] = [];
  let off = 0;
  for (let i = 0; i < n; i++) {
    const data = bytes(`r${i}:`.padEnd(size, 'x'));
    offsets.push(off);
    off += HEADER + data.length;
    await wal.append(data);
  }
  await wal.close();
  return offsets;
}

async function flipByte(file: string, at: number): Promise<void> {
  const buf = await readFile(file);
  buf[at] = buf[at]! ^ 0xff;
  await writeFile(file, buf);
}

/** The private file handle, so a test can make the disk fail. */
function segmentHandle(wal: Wal): FileHandle {
  return (wal as unknown as { fh: FileHandle }).fh;
}

describe('Wal basics', () => {
  it('round-trips records across reopen, in order, with their segment seq', async () => {
    const nested = join(dir, 'a', 'b', 'wal');
    const { wal, records } = await Wal.open(nested);
    expect(records).toEqual([]);
    expect(wal.currentSeq).toBe(1);
    expect(await wal.append(bytes('one'))).toEqual({ seq: 1 });
    await wal.append(new Uint8Array(0));
    await wal.append(bytes('three'));
    await wal.close();

    const again = await Wal.open(nested);
    expect(again.records.map((r) => [r.seq, text(r.data)])).toEqual([
      [1, 'one'],
      [1, ''],
      [1, 'three'],
    ]);
    await again.wal.append(bytes('four'));
    await again.wal.close();
    const third = await Wal.open(nested);
    expect(third.records.map((r) => text(r.data))).toEqual(['one', '', 'three', 'four']);
    await third.wal.close();
    expect(await readdir(nested)).toEqual([SEG1]);
  });

  it('uses the documented record framing', async () => {
    const { wal } = await Wal.open(dir);
    await wal.append(bytes('hello'));
    await wal.close();
    const buf = await readFile(join(dir, SEG1));
    expect(buf.length).toBe(HEADER + 5);
    expect(buf.readUInt32LE(0)).toBe(5);
    expect(buf.subarray(HEADER).toString()).toBe('hello');
  });

  it('rejects appends after close, and close waits for queued appends', async () => {
    const { wal } = await Wal.open(dir);
    const pending = [wal.append(bytes('a')), wal.append(bytes('b'))];
    await wal.close();
    await expect(Promise.all(pending)).resolves.toHaveLength(2);
    await expect(wal.append(bytes('c'))).rejects.toThrow(/closed/);
    const { texts, wal: w2 } = await openWal();
    expect(texts).toEqual(['a', 'b']);
    await w2.close();
  });
});

describe('Wal group commit', () => {
  it('batches 200 concurrent appends into a few writes and fsyncs', async () => {
    const { wal } = await Wal.open(dir);
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => wal.append(bytes(`rec-${i}`))));
    expect(results.every((r) => r.seq === 1)).toBe(true);
    expect(wal.stats.records).toBe(200);
    expect(wal.stats.fsyncs).toBeLessThan(20);
    expect(wal.stats.writes).toBe(wal.stats.fsyncs);
    await wal.close();
    const { texts, wal: w2 } = await openWal();
    expect(texts).toEqual(Array.from({ length: 200 }, (_, i) => `rec-${i}`));
    await w2.close();
  });

  it('queues appends made while a write is in flight into one following batch', async () => {
    const { wal } = await Wal.open(dir);
    const first = wal.append(bytes('first'));
    await new Promise((r) => setImmediate(r)); // let the first batch start its write
    const rest = Array.from({ length: 50 }, (_, i) => wal.append(bytes(`later-${i}`)));
    await Promise.all([first, ...rest]);
    expect(wal.stats).toMatchObject({ writes: 2, fsyncs: 2, records: 51 });
    await wal.close();
  });

  it('does one fsync per append when appends are sequential', async () => {
    const { wal } = await Wal.open(dir);
    for (let i = 0; i < 5; i++) await wal.append(bytes(`s${i}`));
    expect(wal.stats).toMatchObject({ writes: 5, fsyncs: 5, records: 5 });
    await wal.close();
  });

  it('appendMany puts all its records in one write', async () => {
    const { wal } = await Wal.open(dir);
    await wal.appendMany([bytes('x'), bytes('y'), bytes('z')]);
    expect(wal.stats).toMatchObject({ writes: 1, fsyncs: 1, records: 3, bytes: 3 * (HEADER + 1) });
    await wal.close();
    const { texts, wal: w2 } = await openWal();
    expect(texts).toEqual(['x', 'y', 'z']);
    await w2.close();
  });

  it('fails every waiting append on an fsync error and stays failed', async () => {
    const { wal } = await Wal.open(dir);
    await wal.append(bytes('ok'));
    const boom = new Error('EIO: simulated fsync failure');
    segmentHandle(wal).datasync = () => Promise.reject(boom);
    const batch = Array.from({ length: 5 }, (_, i) => wal.append(bytes(`doomed-${i}`)));
    const settled = await Promise.allSettled(batch);
    expect(settled.every((s) => s.status === 'rejected' && s.reason === boom)).toBe(true);
    await expect(wal.append(bytes('after'))).rejects.toBe(boom);
    await expect(wal.rotate()).rejects.toBe(boom);
    expect(wal.stats.fsyncs).toBe(1);
    await wal.close();
  });
});

describe('Wal recovery of a torn tail', () => {
  const lastRecordLen = HEADER + 20;
  // `keep` is how many of the 4 records must survive.
  const cases: { name: string; keep: number; damage: (file: string, offsets: number[]) => Promise<void> }[] = [
    { name: 'cut mid-header', keep: 3, damage: (f, o) => truncate(f, o[3]! + 5) },
    { name: 'cut mid-payload', keep: 3, damage: (f, o) => truncate(f, o[3]! + HEADER + 7) },
    { name: 'zero-filled tail after the last record', keep: 4, damage: (f) => appendFile(f, Buffer.alloc(100)) },
    {
      name: 'last record zeroed out',
      keep: 3,
      damage: async (f, o) => {
        await truncate(f, o[3]!);
        await appendFile(f, Buffer.alloc(lastRecordLen));
      },
    },
    { name: 'flipped payload byte in the last record', keep: 3, damage: (f, o) => flipByte(f, o[3]! + HEADER + 3) },
  ];

  for (const c of cases) {
    it(`${c.name}: truncates, keeps earlier records, accepts new appends`, async () => {
      const offsets = await writeRecords(4);
      const file = join(dir, SEG1);
      await c.damage(file, offsets);
      const keep = c.keep;

      const { wal, texts, warnings } = await openWal();
      expect(texts).toEqual(Array.from({ length: keep }, (_, i) => `r${i}:`.padEnd(20, 'x')));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain(file);
      const validBytes = keep * lastRecordLen;
      expect((await stat(file)).size).toBe(validBytes);

      await wal.append(bytes('new'));
      await wal.close();
      const again = await openWal();
      expect(again.texts).toEqual([...texts, 'new']);
      expect(again.warnings).toEqual([]);
      await again.wal.close();
    });
  }
});

describe('Wal corruption', () => {
  it('refuses a flipped payload byte in a middle record, naming file and offset', async () => {
    const offsets = await writeRecords(4);
    const file = join(dir, SEG1);
    await flipByte(file, offsets[1]! + HEADER + 2);
    const sizeBefore = (await stat(file)).size;
    const err = await Wal.open(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WalCorruptionError);
    const c = err as WalCorruptionError;
    expect(c.file).toBe(file);
    expect(c.offset).toBe(offsets[1]);
    expect(c.message).toContain(file);
    expect(c.message).toContain(`offset ${offsets[1]}`);
    expect(c.message).toMatch(/refusing to start.*bad checksum.*data after it would be lost/);
    expect((await stat(file)).size).toBe(sizeBefore); // nothing was truncated
  });

  it('refuses a flipped length byte in a middle record header', async () => {
    const offsets = await writeRecords(4);
    const file = join(dir, SEG1);
    await flipByte(file, offsets[2]!);
    const err = await Wal.open(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WalCorruptionError);
    expect((err as WalCorruptionError).offset).toBe(offsets[2]);
    expect((err as Error).message).toContain(`${file} offset ${offsets[2]} has a bad header checksum`);
  });

  it('refuses a zeroed region followed by more data in the last segment', async () => {
    const offsets = await writeRecords(4);
    const file = join(dir, SEG1);
    const buf = await readFile(file);
    buf.fill(0, offsets[1]!, offsets[2]!);
    await writeFile(file, buf);
    await expect(Wal.open(dir)).rejects.toBeInstanceOf(WalCorruptionError);
  });

  it('refuses even a torn-looking tail in a segment that is not the last', async () => {
    const { wal } = await Wal.open(dir);
    await wal.append(bytes('in segment 1'));
    await wal.rotate();
    await wal.append(bytes('in segment 2'));
    await wal.close();
    const file = join(dir, SEG1);
    await truncate(file, (await stat(file)).size - 3);
    const err = await Wal.open(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WalCorruptionError);
    expect((err as Error).message).toContain(file);
    expect((err as Error).message).toContain('not the last segment');
  });

  it('refuses a missing segment in the middle of the sequence', async () => {
    const { wal } = await Wal.open(dir);
    for (let i = 0; i < 3; i++) {
      await wal.append(bytes(`seg ${wal.currentSeq}`));
      await wal.rotate();
    }
    await wal.close();
    await unlink(join(dir, '0000000000000002.wal'));
    await expect(Wal.open(dir)).rejects.toThrow(/0000000000000002\.wal is missing/);
  });
});

describe('Wal segments', () => {
  it('rotates by size and writes the onRotate records first in each new segment', async () => {
    let rotations = 0;
    const onRotate = () => [bytes(`state#${++rotations}`)];
    const { wal } = await Wal.open(dir, { segmentBytes: 100, onRotate });
    const seqs: number[] = [];
    for (let i = 0; i < 10; i++) seqs.push((await wal.append(bytes(`data-${i}`.padEnd(30, '.')))).seq);
    // 42-byte frames: a segment reaches 100 bytes after 3 records (or 1 state + 2 records).
    expect(seqs).toEqual([1, 1, 1, 2, 2, 3, 3, 4, 4, 5]);
    expect(wal.currentSeq).toBe(5);
    await wal.close();

    expect((await readdir(dir)).sort()).toEqual([1, 2, 3, 4, 5].map((s) => `${String(s).padStart(16, '0')}.wal`));
    const { records, wal: w2 } = await Wal.open(dir);
    await w2.close();
    for (let seq = 2; seq <= 5; seq++) {
      const first = records.find((r) => r.seq === seq)!;
      expect(text(first.data)).toBe(`state#${seq - 1}`);
    }
    const data = records.map((r) => text(r.data)).filter((t) => t.startsWith('data-'));
    expect(data.map((t) => t.replace(/\.+$/, ''))).toEqual(Array.from({ length: 10 }, (_, i) => `data-${i}`));
  });

  it('orders rotate() with respect to queued appends', async () => {
    const { wal } = await Wal.open(dir, { onRotate: () => [bytes('hard-state')] });
    const a = wal.append(bytes('a'));
    const r = wal.rotate();
    const b = wal.append(bytes('b'));
    expect(await a).toEqual({ seq: 1 });
    expect(await r).toBe(2);
    expect(await b).toEqual({ seq: 2 });
    await wal.close();
    const { records, wal: w2 } = await Wal.open(dir);
    await w2.close();
    expect(records.map((x) => [x.seq, text(x.data)])).toEqual([
      [1, 'a'],
      [2, 'hard-state'],
      [2, 'b'],
    ]);
  });

  it('removeSegmentsBelow deletes older segments only', async () => {
    const { wal } = await Wal.open(dir);
    for (let i = 0; i < 4; i++) {
      await wal.append(bytes(`in ${wal.currentSeq}`));
      await wal.rotate();
    }
    await wal.append(bytes(`in ${wal.currentSeq}`));
    expect(wal.currentSeq).toBe(5);
    await wal.removeSegmentsBelow(3);
    await expect(wal.removeSegmentsBelow(6)).rejects.toBeInstanceOf(RangeError);
    await wal.close();
    expect((await readdir(dir)).sort()).toEqual([3, 4, 5].map((s) => `${String(s).padStart(16, '0')}.wal`));
    const { records, wal: w2 } = await Wal.open(dir);
    expect(records.map((r) => [r.seq, text(r.data)])).toEqual([
      [3, 'in 3'],
      [4, 'in 4'],
      [5, 'in 5'],
    ]);
    expect(w2.currentSeq).toBe(5);
    await w2.close();
  });
});

// A real full disk: a 256 KiB tmpfs (needs root, as the namespace tests do), filled by a file.
describe('Wal on a full disk', () => {
  let mnt: string;
  beforeEach(async () => {
    mnt = await mkdtemp(join(tmpdir(), 'blixard-wal-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mnt]);
  });
  afterEach(async () => {
    execFileSync('umount', [mnt]);
    await rm(mnt, { recursive: true, force: true });
  });

  /** Fills the file system but for `leave` bytes. */
  async function fill(leave: number): Promise<string> {
    const filler = join(mnt, 'filler');
    const { bavail, bsize } = await statfs(mnt);
    await writeFile(filler, Buffer.alloc(Math.max(0, bavail * bsize - leave)));
    return filler;
  }

  it('keeps appends waiting, fails none, and writes them once space returns; reopened, nothing is torn', async () => {
    const full: string[] = [];
    const back: number[] = [];
    const { wal } = await Wal.open(join(mnt, 'wal'), { fullRetryMs: 100, onFull: (e) => full.push((e as NodeJS.ErrnoException).code ?? ''), onSpace: (ms) => back.push(ms) });
    await wal.append(bytes('before'));
    const filler = await fill(0);
    const waiting = [wal.append(bytes('x'.repeat(20_000))), wal.append(bytes('after'))];
    let settled = false;
    void Promise.allSettled(waiting).then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 400));
    expect(settled).toBe(false);
    expect(full).toEqual(['ENOSPC']);
    expect(wal.fullSinceMs).toBeTypeOf('number');
    await unlink(filler);
    await Promise.all(waiting);
    expect(back).toHaveLength(1);
    expect(wal.fullSinceMs).toBeUndefined();
    await wal.append(bytes('later'));
    await wal.close();
    const again = await Wal.open(join(mnt, 'wal'), { onWarning: (m) => full.push(m) });
    expect(again.records.map((r) => text(r.data).slice(0, 6))).toEqual(['before', 'xxxxxx', 'after', 'later']);
    expect(full).toEqual(['ENOSPC']); // no torn tail to cut
    await again.wal.close();
  });

  it('close gives up what waits for space', async () => {
    const { wal } = await Wal.open(join(mnt, 'wal'), { fullRetryMs: 60_000 });
    await fill(0);
    const waiting = wal.append(bytes('x'.repeat(20_000)));
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    const given = expect(waiting).rejects.toMatchObject({ code: 'ENOSPC' });
    await wal.close();
    await given;
    expect(Date.now() - t0).toBeLessThan(1_000);
  });

  it('with dieWhenFull (a mistake the fault tests must catch) it fails as on any failed write', async () => {
    const { wal } = await Wal.open(join(mnt, 'wal'), { dieWhenFull: true });
    await fill(0);
    await expect(wal.append(bytes('x'.repeat(20_000)))).rejects.toMatchObject({ code: 'ENOSPC' });
    await expect(wal.append(bytes('y'))).rejects.toMatchObject({ code: 'ENOSPC' });
    await wal.close();
  });
});
