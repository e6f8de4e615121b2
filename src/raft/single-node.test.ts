import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { SingleNodeLog, type StateMachine } from './single-node.js';
import { writeSnapshot } from './snapshot.js';
import { Wal } from './wal.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'blixard-log-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

type Command = { op: 'incr'; key: string } | { op: 'set'; key: string; value: number } | { op: 'boom' };

const cmd = (c: Command): Uint8Array => new TextEncoder().encode(JSON.stringify(c));

/** A counter/kv machine that also records how it was driven, so tests can check ordering. */
class CounterMachine implements StateMachine {
  counts = new Map<string, number>();
  lastIndex = 0;
  outOfOrder: number[] = [];
  applies = 0;
  restoredAt: number[] = [];

  apply(data: Uint8Array, index: number): unknown {
    if (index !== this.lastIndex + 1) this.outOfOrder.push(index);
    this.lastIndex = index;
    this.applies++;
    const c = JSON.parse(new TextDecoder().decode(data)) as Command;
    if (c.op === 'boom') throw new Error(`boom at ${index}`);
    const value = c.op === 'incr' ? (this.counts.get(c.key) ?? 0) + 1 : c.value;
    this.counts.set(c.key, value);
    return value;
  }
  snapshot(): Uint8Array {
    return new TextEncoder().encode(JSON.stringify([...this.counts]));
  }
  restore(data: Uint8Array, index: number): void {
    this.counts = new Map(JSON.parse(new TextDecoder().decode(data)) as [string, number][]);
    this.lastIndex = index;
    this.restoredAt.push(index);
  }
}

/** Writes raw log entries (u64 term, u64 index, data) straight into the WAL. */
async function writeRawEntries(entries: { index: number; c: Command; term?: number }[]): Promise<void> {
  const { wal } = await Wal.open(join(dir, 'wal'));
  for (const e of entries) {
    const data = cmd(e.c);
    const b = Buffer.alloc(16 + data.length);
    b.writeBigUInt64LE(BigInt(e.term ?? 1), 0);
    b.writeBigUInt64LE(BigInt(e.index), 8);
    b.set(data, 16);
    await wal.append(b);
  }
  await wal.close();
}

const walSegments = async (): Promise<number[]> =>
  (await readdir(join(dir, 'wal'))).map((n) => Number(n.replace('.wal', ''))).sort((a, b) => a - b);
const snapshotFiles = async (): Promise<string[]> =>
  (await readdir(join(dir, 'snap'))).filter((n) => n.endsWith('.snap')).sort();

describe('SingleNodeLog', () => {
  it('applies proposals in index order and resolves each with its result', async () => {
    const sm = new CounterMachine();
    const log = await SingleNodeLog.open(dir, sm);
    expect([log.term, log.lastIndex, log.commitIndex, log.appliedIndex]).toEqual([1, 0, 0, 0]);
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => log.propose(cmd({ op: 'incr', key: i % 2 ? 'b' : 'a' }))),
    );
    expect(results).toEqual(Array.from({ length: 10 }, (_, i) => ({ index: i + 1, result: Math.floor(i / 2) + 1 })));
    expect([log.lastIndex, log.commitIndex, log.appliedIndex]).toEqual([10, 10, 10]);
    expect(sm.outOfOrder).toEqual([]);
    await log.close();
    await expect(log.propose(cmd({ op: 'incr', key: 'a' }))).rejects.toThrow(/closed/);
  });

  it('assigns indices in call order and only applies after the entry is durable', async () => {
    const sm = new CounterMachine();
    const log = await SingleNodeLog.open(dir, sm);
    const p = log.propose(cmd({ op: 'set', key: 'x', value: 7 }));
    expect(log.lastIndex).toBe(1); // assigned synchronously
    expect(log.appliedIndex).toBe(0);
    expect(sm.applies).toBe(0);
    expect(log.walStats.fsyncs).toBe(0);
    await p;
    expect(log.walStats.fsyncs).toBe(1);
    expect(sm.counts.get('x')).toBe(7);
    await log.close();
  });

  it('rejects a proposal whose apply throws, but consumes its index and replays the same way', async () => {
    const sm = new CounterMachine();
    const log = await SingleNodeLog.open(dir, sm);
    const a = log.propose(cmd({ op: 'incr', key: 'a' }));
    const bad = log.propose(cmd({ op: 'boom' }));
    const c = log.propose(cmd({ op: 'incr', key: 'a' }));
    await expect(bad).rejects.toThrow('boom at 2');
    expect(await a).toEqual({ index: 1, result: 1 });
    expect(await c).toEqual({ index: 3, result: 2 });
    expect(log.appliedIndex).toBe(3);
    await log.close();

    const sm2 = new CounterMachine();
    const log2 = await SingleNodeLog.open(dir, sm2);
    expect(log2.appliedIndex).toBe(3);
    expect(sm2.counts.get('a')).toBe(2);
    expect(await log2.propose(cmd({ op: 'incr', key: 'a' }))).toEqual({ index: 4, result: 3 });
    await log2.close();
  });

  it('shares fsyncs between concurrent proposals', async () => {
    const log = await SingleNodeLog.open(dir, new CounterMachine());
    const results = await Promise.all(Array.from({ length: 200 }, () => log.propose(cmd({ op: 'incr', key: 'n' }))));
    expect(results.map((r) => r.index)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect(results.map((r) => r.result)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect(log.walStats.records).toBe(200);
    expect(log.walStats.fsyncs).toBeLessThan(20);
    await log.close();
  });

  it('snapshots every N entries, deletes old WAL segments, and restores via snapshot + replay', async () => {
    const sm = new CounterMachine();
    const log = await SingleNodeLog.open(dir, sm, { snapshotEvery: 50 });
    for (let i = 0; i < 50; i++) {
      // Batches of 10 concurrent proposals, so snapshots overlap with proposals in flight.
      await Promise.all(Array.from({ length: 10 }, (_, j) => log.propose(cmd({ op: 'incr', key: `k${j % 3}` }))));
    }
    expect(log.appliedIndex).toBe(500);
    await log.close();

    const snaps = await snapshotFiles();
    expect(snaps).toHaveLength(2);
    const newest = Number(/-(\d{16})\.snap$/.exec(snaps[1]!)![1]);
    expect(newest).toBeGreaterThanOrEqual(400);
    const segments = await walSegments();
    expect(segments[0]).toBeGreaterThan(1); // the oldest segments are gone
    expect(segments.length).toBeLessThanOrEqual(4);

    const sm2 = new CounterMachine();
    const log2 = await SingleNodeLog.open(dir, sm2, { snapshotEvery: 50 });
    expect(sm2.restoredAt).toEqual([newest]);
    expect(sm2.applies).toBe(500 - newest); // only the tail was replayed
    expect(sm2.outOfOrder).toEqual([]);
    expect(Object.fromEntries(sm2.counts)).toEqual(Object.fromEntries(sm.counts));
    expect(Object.fromEntries(sm2.counts)).toEqual({ k0: 200, k1: 150, k2: 150 });
    expect([log2.lastIndex, log2.appliedIndex]).toEqual([500, 500]);
    expect(await log2.propose(cmd({ op: 'incr', key: 'k0' }))).toEqual({ index: 501, result: 201 });
    await log2.close();
  });

  it('keeps enough WAL to recover from the older snapshot when the newest is damaged', async () => {
    const log = await SingleNodeLog.open(dir, new CounterMachine(), { snapshotEvery: 50 });
    for (let i = 0; i < 300; i++) await log.propose(cmd({ op: 'incr', key: 'n' }));
    await log.snapshotNow();
    await log.close();
    const snaps = await snapshotFiles();
    const newestFile = join(dir, 'snap', snaps[1]!);
    const buf = await readFile(newestFile);
    buf[buf.length - 1] = buf[buf.length - 1]! ^ 0xff;
    await writeFile(newestFile, buf);

    const warnings: string[] = [];
    const sm = new CounterMachine();
    const log2 = await SingleNodeLog.open(dir, sm, { onWarning: (m) => warnings.push(m) });
    expect(warnings.join('\n')).toContain(newestFile);
    expect(sm.restoredAt[0]).toBeLessThan(300);
    expect(sm.counts.get('n')).toBe(300);
    expect(log2.appliedIndex).toBe(300);
    await log2.close();
  });

  it('snapshotNow does nothing when nothing was applied since the last snapshot', async () => {
    const log = await SingleNodeLog.open(dir, new CounterMachine());
    await log.propose(cmd({ op: 'incr', key: 'a' }));
    await log.snapshotNow();
    await log.snapshotNow();
    expect(await snapshotFiles()).toHaveLength(1);
    await log.close();
  });

  it('rejects pending and future proposals once the WAL fails', async () => {
    const log = await SingleNodeLog.open(dir, new CounterMachine());
    await log.propose(cmd({ op: 'incr', key: 'a' }));
    const wal = (log as unknown as { wal: Wal }).wal;
    const boom = new Error('EIO: simulated');
    (wal as unknown as { fh: FileHandle }).fh.datasync = () => Promise.reject(boom);
    const pending = Array.from({ length: 5 }, () => log.propose(cmd({ op: 'incr', key: 'a' })));
    const settled = await Promise.allSettled(pending);
    expect(settled.every((s) => s.status === 'rejected' && s.reason === boom)).toBe(true);
    await expect(log.propose(cmd({ op: 'incr', key: 'a' }))).rejects.toBe(boom);
    expect(log.appliedIndex).toBe(1);
    await log.close();
  });

  it('replays a rewritten suffix the way Raft does', async () => {
    await writeRawEntries([
      { index: 1, c: { op: 'set', key: 'a', value: 1 } },
      { index: 2, c: { op: 'set', key: 'b', value: 2 } },
      { index: 3, c: { op: 'set', key: 'c', value: 3 } },
      { index: 2, c: { op: 'set', key: 'b', value: 20 }, term: 2 },
    ]);
    const sm = new CounterMachine();
    const log = await SingleNodeLog.open(dir, sm);
    expect(Object.fromEntries(sm.counts)).toEqual({ a: 1, b: 20 });
    expect([log.lastIndex, log.term]).toEqual([2, 2]);
    await log.close();
  });

  it('refuses to start when WAL indices have a gap', async () => {
    await writeRawEntries([
      { index: 1, c: { op: 'incr', key: 'a' } },
      { index: 2, c: { op: 'incr', key: 'a' } },
      { index: 4, c: { op: 'incr', key: 'a' } },
    ]);
    await expect(SingleNodeLog.open(dir, new CounterMachine())).rejects.toThrow(/entry 4 .*entries 3\.\.3 are missing/);
  });

  it('refuses to start when the WAL does not continue from the snapshot', async () => {
    await writeSnapshot(join(dir, 'snap'), { term: 1, index: 10 }, new CounterMachine().snapshot());
    await writeRawEntries([{ index: 12, c: { op: 'incr', key: 'a' } }]);
    await expect(SingleNodeLog.open(dir, new CounterMachine())).rejects.toThrow(/follows the snapshot \(index 10\); entries 11\.\.11 are missing/);
  });
});

describe('SingleNodeLog crash safety', () => {
  const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
  const compiled = join(repoRoot, 'dist', 'src', 'raft');

  function compiledModule(): string {
    const entry = join(compiled, 'single-node.js');
    if (!existsSync(entry)) {
      throw new Error(`${entry} is missing: run \`npx tsc -p tsconfig.json\` before this test (it runs the compiled module in a child process)`);
    }
    for (const name of ['single-node', 'wal', 'snapshot']) {
      const src = join(repoRoot, 'src', 'raft', `${name}.ts`);
      const out = join(compiled, `${name}.js`);
      if (!existsSync(out) || statSync(out).mtimeMs < statSync(src).mtimeMs) {
        throw new Error(`${out} is older than ${src}: run \`npx tsc -p tsconfig.json\` before this test`);
      }
    }
    return entry;
  }

  const childScript = (moduleUrl: string): string => `
import { SingleNodeLog } from ${JSON.stringify(moduleUrl)};

const items = [];
const sm = {
  apply(data) { items.push(Buffer.from(data).toString()); return items.length; },
  snapshot() { return Buffer.from(JSON.stringify(items)); },
  restore(data) { items.length = 0; for (const x of JSON.parse(Buffer.from(data).toString())) items.push(x); },
};
const log = await SingleNodeLog.open(process.argv[2], sm, { snapshotEvery: 100, segmentBytes: 4096 });
let next = log.lastIndex;
async function worker() {
  for (;;) {
    const n = ++next; // propose() assigns index n to this call
    const { index } = await log.propose(Buffer.from('e' + n));
    process.stdout.write('ack ' + index + ' e' + n + '\\n');
  }
}
for (let i = 0; i < 8; i++) worker().catch((err) => { console.error(err); process.exit(1); });
`;

  /** Runs the child until it has acknowledged `target` entries, then SIGKILLs it. */
  async function runAndKill(script: string, dataDir: string, target: number, acks: Map<number, string>): Promise<void> {
    const child = spawn(process.execPath, [script, dataDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let seen = 0;
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const lines = out.split('\n');
      out = lines.pop()!;
      for (const line of lines) {
        const m = /^ack (\d+) (e\d+)$/.exec(line);
        if (!m) continue;
        acks.set(Number(m[1]), m[2]!);
        if (++seen === target) child.kill('SIGKILL');
      }
    });
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((res) =>
      child.on('close', (c, s) => res([c, s])),
    );
    clearTimeout(timer);
    expect(signal, `child ended with code ${code}: ${err}`).toBe('SIGKILL');
    expect(seen, `child acknowledged only ${seen} entries before the timeout: ${err}`).toBeGreaterThanOrEqual(target);
  }

  it('keeps every acknowledged entry across SIGKILL, twice', async () => {
    const script = join(dir, 'child.mjs');
    await writeFile(script, childScript(pathToFileURL(compiledModule()).href));
    const dataDir = join(dir, 'data');
    const acks = new Map<number, string>();

    await runAndKill(script, dataDir, 300, acks);
    await runAndKill(script, dataDir, 300, acks); // recovers from the first crash, then crashes again

    const items: string[] = [];
    const warnings: string[] = [];
    const log = await SingleNodeLog.open(
      dataDir,
      {
        apply: (data) => items.push(Buffer.from(data).toString()),
        snapshot: () => Buffer.from(JSON.stringify(items)),
        restore: (data) => items.splice(0, items.length, ...(JSON.parse(Buffer.from(data).toString()) as string[])),
      },
      { onWarning: (m) => warnings.push(m) },
    );
    const maxAck = Math.max(...acks.keys());
    expect(acks.size).toBeGreaterThanOrEqual(600);
    expect(log.appliedIndex).toBe(items.length);
    expect(items.length).toBeGreaterThanOrEqual(maxAck);
    // Prefix-consistent: entry i is exactly the i-th proposal, with no holes or reordering...
    expect(items.every((v, i) => v === `e${i + 1}`)).toBe(true);
    // ...and every acknowledged entry is there.
    for (const [index, value] of acks) expect(items[index - 1]).toBe(value);
    // Snapshots and compaction happened while the child ran.
    expect((await readdir(join(dataDir, 'snap'))).some((n) => n.endsWith('.snap'))).toBe(true);
    expect(Number((await readdir(join(dataDir, 'wal'))).sort()[0]!.replace('.wal', ''))).toBeGreaterThan(1);
    await log.close();
  });
});
