import { open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir } from '../storage/index.js';
import { ensureDir, loadCrc32c } from './wal.js';

// Snapshot files, written atomically (temp file, fsync, rename, fsync dir) in the style of etcd's
// snap package. The newest two are kept so that a damaged newest one still leaves a usable one.
//
// File layout (little endian), header then data:
//   magic "BLXSNAP\0" | version u32 | term u64 | index u64 | data length u64 | CRC32C(data) u32 |
//   CRC32C(all previous header bytes) u32

export interface SnapshotMeta {
  index: number;
  term: number;
}

export interface Snapshot {
  meta: SnapshotMeta;
  data: Uint8Array;
}

const MAGIC = Buffer.from('BLXSNAP\0', 'latin1');
const VERSION = 1;
const HEADER_BYTES = MAGIC.length + 4 + 8 + 8 + 8 + 4 + 4;
const KEEP = 2;
const SNAP_NAME = /^snap-(\d{16})-(\d{16})\.snap$/;
const TEMP_SUFFIX = '.tmp';
const BROKEN_SUFFIX = '.broken';

function snapName({ term, index }: SnapshotMeta): string {
  return `snap-${String(term).padStart(16, '0')}-${String(index).padStart(16, '0')}.snap`;
}

function checkMeta({ term, index }: SnapshotMeta): void {
  for (const [k, v] of [['term', term], ['index', index]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`snapshot ${k} must be a non-negative integer, got ${v}`);
  }
}

function encodeHeader(meta: SnapshotMeta, data: Uint8Array, crc: (d: Uint8Array) => number): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  let o = MAGIC.copy(h, 0);
  o = h.writeUInt32LE(VERSION, o);
  o = h.writeBigUInt64LE(BigInt(meta.term), o);
  o = h.writeBigUInt64LE(BigInt(meta.index), o);
  o = h.writeBigUInt64LE(BigInt(data.length), o);
  o = h.writeUInt32LE(crc(data), o);
  h.writeUInt32LE(crc(h.subarray(0, o)), o);
  return h;
}

/** Returns the snapshot, or a description of what is wrong with the file. */
function decode(buf: Buffer, expected: SnapshotMeta, crc: (d: Uint8Array) => number): Snapshot | string {
  if (buf.length < HEADER_BYTES) return `file is ${buf.length} bytes, shorter than the header`;
  if (!buf.subarray(0, MAGIC.length).equals(MAGIC)) return 'bad magic';
  const headerCrcAt = HEADER_BYTES - 4;
  if (crc(buf.subarray(0, headerCrcAt)) !== buf.readUInt32LE(headerCrcAt)) return 'bad header checksum';
  let o = MAGIC.length;
  const version = buf.readUInt32LE(o);
  if (version !== VERSION) return `unsupported version ${version}`;
  const term = Number(buf.readBigUInt64LE((o += 4)));
  const index = Number(buf.readBigUInt64LE((o += 8)));
  const length = Number(buf.readBigUInt64LE((o += 8)));
  const dataCrc = buf.readUInt32LE((o += 8));
  if (term !== expected.term || index !== expected.index) {
    return `header says term ${term} index ${index}, file name says term ${expected.term} index ${expected.index}`;
  }
  if (buf.length - HEADER_BYTES !== length) return `data is ${buf.length - HEADER_BYTES} bytes, header says ${length}`;
  const data = buf.subarray(HEADER_BYTES);
  if (crc(data) !== dataCrc) return 'bad data checksum';
  return { meta: { term, index }, data };
}

/** Durably writes a snapshot of the state at `meta.index`, then deletes all but the newest two. */
export async function writeSnapshot(dir: string, meta: SnapshotMeta, data: Uint8Array): Promise<void> {
  checkMeta(meta);
  const crc = await loadCrc32c();
  await ensureDir(dir);
  const final = join(dir, snapName(meta));
  const temp = final + TEMP_SUFFIX;
  try {
    const fh = await open(temp, 'w');
    try {
      await fh.writeFile(encodeHeader(meta, data, crc));
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(temp, final);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  await fsyncDir(dir);
  await prune(dir);
}

async function prune(dir: string): Promise<void> {
  const names = (await readdir(dir)).filter((n) => SNAP_NAME.test(n)).sort();
  const old = names.slice(0, Math.max(0, names.length - KEEP));
  for (const name of old) await unlink(join(dir, name));
  if (old.length > 0) await fsyncDir(dir);
}

/**
 * Returns the newest snapshot that reads back intact, or null if there is none. A damaged one is
 * renamed to *.broken (kept for inspection, out of the way of pruning) and the next older is
 * tried. Temp files left by an interrupted write are deleted, so call this at startup, not while
 * a writeSnapshot to the same directory may be running.
 */
export async function readLatestSnapshot(dir: string, onWarning?: (msg: string) => void): Promise<Snapshot | null> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const crc = await loadCrc32c();

  const temps = names.filter((n) => n.endsWith(TEMP_SUFFIX));
  for (const name of temps) {
    await unlink(join(dir, name));
    onWarning?.(`removed ${join(dir, name)}, left over from an interrupted snapshot write`);
  }
  let dirChanged = temps.length > 0;

  try {
    const candidates = names.flatMap((name) => {
      const m = SNAP_NAME.exec(name);
      return m ? [{ name, meta: { term: Number(m[1]), index: Number(m[2]) } }] : [];
    });
    for (const { name, meta } of candidates.sort((a, b) => (a.name < b.name ? 1 : -1))) {
      const file = join(dir, name);
      const result = decode(await readFile(file), meta, crc);
      if (typeof result !== 'string') return result;
      await rename(file, file + BROKEN_SUFFIX);
      dirChanged = true;
      onWarning?.(`snapshot ${file} is unusable (${result}); moved it to ${file + BROKEN_SUFFIX} and trying an older one`);
    }
    return null;
  } finally {
    if (dirChanged) await fsyncDir(dir);
  }
}
