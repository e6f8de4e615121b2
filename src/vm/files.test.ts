import { appendFile, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { followFile, readJson, writeJsonAtomic } from './files.js';

// Following a console: an append is delivered when it is written (the watch), not a poll later,
// and a file replaced under the same name (a new launch) is read from its start.

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'blixard-follow-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function collector() {
  let text = '';
  const waiters: { want: string; resolve: (ms: number) => void; t0: number }[] = [];
  return {
    onData: (b: Buffer) => {
      text += b.toString('utf8');
      for (const w of waiters.splice(0)) if (text.includes(w.want)) w.resolve(performance.now() - w.t0);
      else waiters.push(w);
    },
    /** Resolves with the ms it took, once `want` has been delivered. */
    until: (want: string) => new Promise<number>((resolve) => (text.includes(want) ? resolve(0) : waiters.push({ want, resolve, t0: performance.now() }))),
    get text() {
      return text;
    },
  };
}

describe('followFile', () => {
  it('delivers an append at once though its poll is 10 s away, and follows a file replaced under the same name', async () => {
    const file = path.join(dir, 'console.log');
    await writeFile(file, 'boot\n');
    const stop = new AbortController();
    const c = collector();
    const done = followFile(file, 0, stop.signal, c.onData, 10_000);
    await c.until('boot');
    await new Promise((r) => setTimeout(r, 50)); // asleep now, until the poll 10 s away
    const took = c.until('READY');
    await appendFile(file, 'READY\n');
    expect(await took).toBeLessThan(2_000); // a generous bound: the watch, never the 10 s poll
    expect(c.text).toBe('boot\nREADY\n');

    // A new launch: the old console moves away, a new file takes its name. The watch followed the
    // old inode; the next poll (here every 100 ms) notices and reads the new file from its start.
    stop.abort();
    await done;
    const stop2 = new AbortController();
    const c2 = collector();
    const done2 = followFile(file, 0, stop2.signal, c2.onData, 100);
    await c2.until('READY');
    await rename(file, path.join(dir, 'console.log.1'));
    await writeFile(file, 'second launch\n');
    await c2.until('second launch');
    await appendFile(file, 'READY again\n');
    expect(await c2.until('READY again')).toBeLessThan(2_000);
    stop2.abort();
    await done2;
    expect(c2.text).toBe('boot\nREADY\nsecond launch\nREADY again\n');
  });

  it('waits for a file that is not there yet', async () => {
    const file = path.join(dir, 'later.log');
    const stop = new AbortController();
    const c = collector();
    const done = followFile(file, 0, stop.signal, c.onData, 50);
    await new Promise((r) => setTimeout(r, 120));
    await writeFile(file, 'hello\n');
    await c.until('hello');
    stop.abort();
    await done;
    expect(c.text).toBe('hello\n');
  });
});

describe('readJson', () => {
  it('parses a record again only when its text changed, hands out frozen values, and says null once it is gone', async () => {
    const file = path.join(dir, 'run.json');
    const schema = z.object({ pid: z.number() });
    expect(await readJson(file, schema)).toBeNull();
    await writeJsonAtomic(file, { pid: 1 });
    const first = await readJson(file, schema);
    expect(first).toEqual({ pid: 1 });
    expect(await readJson(file, schema)).toBe(first); // unchanged: the same value, not parsed again
    expect(() => ((first as { pid: number }).pid = 2)).toThrow(TypeError);
    await writeJsonAtomic(file, { pid: 2 }); // replaced, same size
    expect(await readJson(file, schema)).toEqual({ pid: 2 });
    await rm(file);
    expect(await readJson(file, schema)).toBeNull();
  });
});
