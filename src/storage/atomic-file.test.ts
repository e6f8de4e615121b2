import { mkdtemp, readdir, readFile, rm, stat, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';

// The order of the calls that make a replacement crash-safe (data fsync before the rename,
// folder fsync after it) is what the sync levels promise, so it is recorded from node:fs.
const calls: string[] = [];
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const kinds = new Map<number, string>();
  return {
    ...fs,
    openSync: (p: string, flags: string, mode?: number) => {
      const fd = fs.openSync(p, flags, mode);
      kinds.set(fd, p.endsWith('.tmp') ? 'tmp' : 'dir');
      return fd;
    },
    fsync: (fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      calls.push(`fsync ${kinds.get(fd)}`);
      fs.fsync(fd, cb);
    },
    renameSync: (a: string, b: string) => {
      calls.push('rename');
      fs.renameSync(a, b);
    },
  };
});
const { writeFileAtomic } = await import('./atomic-file.js');

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'blixard-atomic-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  calls.length = 0;
});

describe('writeFileAtomic', () => {
  it('replaces the content whole, with the mode asked for, and leaves no temp file', async () => {
    const file = path.join(dir, 'node.json');
    await writeFileAtomic(file, 'old\n', { mode: 0o600 });
    await writeFileAtomic(file, Buffer.from('new content\n'), { mode: 0o600 });
    expect(await readFile(file, 'utf8')).toBe('new content\n');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readdir(dir)).toEqual(['node.json']);
  });

  it.each([
    ['none', ['rename']],
    ['data', ['fsync tmp', 'rename']],
    ['all', ['fsync tmp', 'rename', 'fsync dir']],
  ] as const)('sync %s: %j', async (sync, expected) => {
    await writeFileAtomic(path.join(dir, `s-${sync}`), 'x', { sync });
    expect(calls).toEqual(expected);
  });

  it('fails without touching the old file or leaving its temp file behind when the rename fails', async () => {
    const target = path.join(dir, 'taken');
    await mkdir(path.join(target, 'inside'), { recursive: true }); // a non-empty folder: rename refuses
    await expect(writeFileAtomic(target, 'x', { sync: 'data' })).rejects.toThrow(/ENOTEMPTY|EISDIR|EEXIST/);
    expect((await readdir(dir)).filter((f) => f.startsWith('taken'))).toEqual(['taken']);
    expect(await readdir(target)).toEqual(['inside']);
  });
});
