import { closeSync, constants as fsc, existsSync, fstatSync, openSync, read, readFileSync, readSync, statSync, watch, type FSWatcher } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import path from 'node:path';
import type { z } from 'zod';
import { writeFileAtomic, type AtomicWriteOptions } from '../storage/index.js';

// Small file helpers for the VM folders: atomic records, bounded tails, polling waits.

/** A JSON record, replaced atomically (see writeFileAtomic). */
export async function writeJsonAtomic(file: string, value: unknown, o?: AtomicWriteOptions): Promise<void> {
  await writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`, o);
}

/** Reads and validates a JSON record; null when the file does not exist. A file that exists but
 * does not parse is an error naming the file: records are written atomically, so it means
 * someone else wrote there. Read synchronously: these records are a few hundred bytes on local
 * disk, read for every VM at every look, and the promise API costs ~20x the CPU of the read. */
export async function readJson<T>(file: string, schema: z.ZodType<T>): Promise<T | null> {
  let text: string;
  try {
    // Most looks find some records missing (no exit.json while a VM runs): asking first is
    // cheaper than the exception a failed read throws.
    if (!existsSync(file)) {
      records.delete(file);
      return null;
    }
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      records.delete(file);
      return null;
    }
    throw err;
  }
  // The same text as last time is the same record: parsing and validating it again was most of
  // the cost of a look (five records per VM, ten VMs a second on a node of 100). Cached values
  // are frozen: nobody may edit what others get too.
  const hit = records.get(file);
  if (hit && hit.schema === schema && hit.text === text) return hit.value as T;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not JSON (${(err as Error).message})`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new Error(`${file}: unexpected content: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  if (records.size >= RECORDS_KEPT) records.delete(records.keys().next().value!);
  records.set(file, { schema, text, value: deepFreeze(parsed.data) });
  return parsed.data;
}

const RECORDS_KEPT = 20_000;
const records = new Map<string, { schema: z.ZodType<unknown>; text: string; value: unknown }>();

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

/** Whether a path exists (one stat; asked for every VM folder at every look, so not via a promise). */
export async function exists(p: string): Promise<boolean> {
  return existsSync(p);
}

/** The last `bytes` bytes of a file (all of it when bytes is undefined), and the offset where
 * they end (to follow from); empty when the file is missing. Up to 1 MiB is read synchronously
 * (a local file, often a few bytes: every VM start reads its console's), more on the thread pool. */
export async function readTail(file: string, bytes?: number): Promise<{ data: Buffer; end: number }> {
  if (!existsSync(file)) return { data: Buffer.alloc(0), end: 0 };
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { data: Buffer.alloc(0), end: 0 };
    throw err;
  }
  try {
    const size = fstatSync(fd).size;
    const start = bytes === undefined ? 0 : Math.max(0, size - bytes);
    const buf = Buffer.alloc(size - start);
    const bytesRead = buf.length <= SYNC_READ_MAX ? readSync(fd, buf, 0, buf.length, start) : await readAt(fd, buf, start);
    return { data: buf.subarray(0, bytesRead), end: start + bytesRead };
  } finally {
    closeSync(fd);
  }
}

const SYNC_READ_MAX = 1 << 20;

function readAt(fd: number, buf: Buffer, position: number): Promise<number> {
  return new Promise((resolve, reject) => read(fd, buf, 0, buf.length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

/** A short text tail for error messages. */
export async function textTail(file: string, bytes = 2000): Promise<string> {
  return (await readTail(file, bytes)).data.toString('utf8');
}

/**
 * Delivers what is appended to `file` until `signal` aborts, starting at byte `from`. Woken by an
 * inotify watch as soon as something is written (a VM's ready line is seen at once, not up to a
 * poll later), and polls as well (fs watchers miss renames on some filesystems); notices when the
 * file is replaced (a new launch rotates the console) or truncated, and then reads the new file
 * from its start.
 */
export async function followFile(file: string, from: number, signal: AbortSignal, onData: (chunk: Buffer) => void, intervalMs = 200): Promise<void> {
  let offset = from;
  let ino: number | null = null;
  let watcher: FSWatcher | undefined;
  let watchedIno: number | null = null;
  let changed = false;
  let wake: (() => void) | undefined;
  const unwatch = () => {
    watcher?.close();
    watcher = undefined;
  };
  try {
    while (!signal.aborted) {
      changed = false;
      try {
        // Every 200 ms for every VM followed: a synchronous stat is ~20x cheaper than the promise one.
        const st = statSync(file);
        if (ino !== null && st.ino !== ino) offset = 0;
        if (st.size < offset) offset = 0;
        ino = st.ino;
        if (watchedIno !== st.ino) {
          unwatch();
          try {
            watcher = watch(file, { persistent: false }, () => {
              changed = true;
              wake?.();
            });
            watcher.on('error', unwatch);
            watchedIno = st.ino;
            // Written between the stat and the watch: read it now rather than a poll later.
            if (statSync(file).size > st.size) changed = true;
          } catch {
            watchedIno = null; // polled only
          }
        }
        if (st.size > offset) {
          // At most 1 MiB at a time, synchronously (see readTail); the loop comes back for more.
          const fd = openSync(file, 'r');
          try {
            const buf = Buffer.alloc(Math.min(st.size - offset, SYNC_READ_MAX));
            const bytesRead = readSync(fd, buf, 0, buf.length, offset);
            offset += bytesRead;
            if (bytesRead > 0) onData(buf.subarray(0, bytesRead));
          } finally {
            closeSync(fd);
          }
          if (st.size > offset) await new Promise((r) => setImmediate(r)); // a big backlog: let others run between chunks
          continue; // more may be waiting
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        ino = null;
        offset = 0;
      }
      if (changed) continue;
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, intervalMs);
        function done(): void {
          clearTimeout(t);
          wake = undefined;
          signal.removeEventListener('abort', done);
          resolve();
        }
        wake = done;
        signal.addEventListener('abort', done, { once: true });
      });
    }
  } finally {
    unwatch();
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Polls `check` until it returns a value other than undefined, or the time is up (undefined). */
export async function pollUntil<T>(check: () => Promise<T | undefined>, timeoutMs: number, intervalMs = 25): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  let wait = Math.min(2, intervalMs);
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() >= deadline) return undefined;
    await sleep(Math.min(wait, Math.max(0, deadline - Date.now())));
    wait = Math.min(wait * 2, intervalMs);
  }
}

/** Looks a command up on PATH (or checks an explicit path). */
export async function findExecutable(cmd: string): Promise<string | null> {
  const candidates = cmd.includes('/') ? [cmd] : (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(':').filter(Boolean).map((d) => path.join(d, cmd));
  for (const c of candidates) {
    try {
      await access(c, fsc.X_OK);
      if ((await stat(c)).isFile()) return c;
    } catch {
      // not here
    }
  }
  return null;
}
