import { spawnSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BIN, removeDir, startDaemon, tempDir, testEnv } from '../test/helpers/daemon.js';
import type { Row } from './table.js';

// Issue 2's targets, measured as a user meets them: whole CLI processes, Node's start included.
//   validate of 10,000 resources in one folder        target < 2 s
//   diff of 10,000 stored vs changed resources         target < 3 s
//   median apply of one small manifest (local node)    target < 250 ms

const N = 10_000;

function timed(args: string[], env: NodeJS.ProcessEnv, cwd: string): { ms: number; code: number | null; stderr: string } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [BIN, ...args], { env, cwd, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  return { ms: performance.now() - t0, code: r.status, stderr: r.stderr };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function writeResources(dir: string, memoryMiB: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'image.yaml'), `apiVersion: blixard.dev/v1\nkind: Image\nmetadata: { name: base }\nspec: { blob: "blake3:${'c'.repeat(64)}", format: raw }\n`);
  for (let i = 0; i < N - 1; i += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, N - 1 - i) }, (_, j) => {
        const n = i + j;
        const text = `apiVersion: blixard.dev/v1\nkind: VirtualMachine\nmetadata:\n  name: vm-${n}\n  labels: { app: bench, shard: "s${n % 10}" }\nspec:\n  image: base\n  vcpus: 1\n  memoryMiB: ${memoryMiB}\n  kernelArgs: console=ttyS0\n`;
        return writeFile(path.join(dir, `vm-${String(n).padStart(5, '0')}.yaml`), text);
      }),
    );
  }
}

/** CPU seconds a process has used (Linux: utime + stime of /proc/PID/stat). */
async function cpuSeconds(pid: number): Promise<number> {
  const f = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

/**
 * Waits until a daemon has digested what it was sent (scheduling, publishing 10,000 entries into
 * the cluster document): below 10 % of a core over half a second. Returns how long that took.
 */
async function settle(pid: number, timeoutMs = 60_000): Promise<number> {
  const t0 = performance.now();
  let prev = await cpuSeconds(pid);
  while (performance.now() - t0 < timeoutMs) {
    await new Promise((r) => setTimeout(r, 500));
    const now = await cpuSeconds(pid);
    if (now - prev < 0.05) return performance.now() - t0;
    prev = now;
  }
  throw new Error(`the node was still busy ${timeoutMs} ms after the apply`);
}

export async function foundationBench(): Promise<Row[]> {
  const work = await tempDir('blixard-bench-');
  const env = testEnv(path.join(work, 'config'));
  const rows: Row[] = [];
  try {
    const dir = path.join(work, 'set');
    await writeResources(dir, 256);

    const validate = [0, 1, 2].map(() => timed(['validate', '-f', dir], env, work));
    if (validate.some((v) => v.code !== 0)) throw new Error(`validate failed: ${validate[0]!.stderr}`);
    rows.push({ name: `validate ${N} resources (${N} files, one folder)`, value: median(validate.map((v) => v.ms)), unit: 'ms', target: '< 2000 ms' });

    const d = await startDaemon({ dataDir: path.join(work, 'node'), configHome: path.join(work, 'config') });
    try {
      const conn = ['--server', d.api, '--token', d.token];
      const apply = timed([...conn, 'apply', '-f', dir], env, work);
      if (apply.code !== 0) throw new Error(`apply failed: ${apply.stderr}`);
      rows.push({ name: `apply ${N} resources (one atomic entry)`, value: apply.ms, unit: 'ms', target: '(informative)' });
      // The diff is timed against a node at rest, not one still digesting the apply above.
      rows.push({ name: `node busy after that apply (to < 10 % CPU)`, value: await settle(d.proc.pid!), unit: 'ms', target: '(informative)' });

      await writeResources(dir, 512);
      const diffs = [0, 1, 2].map(() => timed([...conn, 'diff', '-f', dir], env, work));
      if (diffs.some((x) => x.code !== 1)) throw new Error(`diff should exit 1: ${diffs[0]!.stderr}`);
      rows.push({ name: `diff ${N} stored vs changed resources`, value: median(diffs.map((x) => x.ms)), unit: 'ms', target: '< 3000 ms' });

      const small = path.join(work, 'small.yaml');
      const times: number[] = [];
      const unchanged: number[] = [];
      for (let i = 0; i < 21; i++) {
        await writeFile(small, `apiVersion: blixard.dev/v1\nkind: VirtualMachine\nmetadata: { name: small }\nspec: { image: base, memoryMiB: ${i % 2 ? 128 : 256} }\n`);
        const r = timed([...conn, 'apply', '-f', small], env, work);
        if (r.code !== 0) throw new Error(`apply failed: ${r.stderr}`);
        times.push(r.ms);
        unchanged.push(timed([...conn, 'apply', '-f', small], env, work).ms);
      }
      rows.push({ name: 'apply one small manifest, changed (median of 21)', value: median(times), unit: 'ms', target: '< 250 ms' });
      rows.push({ name: 'apply one small manifest, unchanged (median of 21)', value: median(unchanged), unit: 'ms', target: '< 250 ms' });
      const bare = [0, 1, 2, 3, 4].map(() => {
        const t0 = performance.now();
        spawnSync(process.execPath, ['-e', '0']);
        return performance.now() - t0;
      });
      rows.push({ name: 'for scale: `node -e 0` (median of 5)', value: median(bare), unit: 'ms', target: '' });
    } finally {
      await d.stop();
    }
  } finally {
    await removeDir(work);
  }
  return rows;
}
