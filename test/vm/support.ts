import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readlink, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, beforeEach } from 'vitest';
import { findExecutable } from '../../src/vm/files.js';
import type { VmSpecForDriver } from '../../src/vm/index.js';

// Shared by the VM driver tests: prerequisites that fail loudly (never skip), the tiny Linux
// guest, and /proc queries to prove what runs.

export const ROOT = path.resolve(import.meta.dirname, '..', '..');
export const BUILD_SCRIPT = path.join(ROOT, 'examples', 'tiny-linux', 'build.sh');
/** Where the guest is built; override to share a build between checkouts. */
export const GUEST_DIR = process.env.BLIXARD_TINY_LINUX_OUT ?? path.join(ROOT, 'examples', 'tiny-linux', 'out');

const APT_HINT = 'apt-get install -y qemu-system-x86 qemu-utils busybox-static cpio';

/** Throws, naming the Debian packages, when a command the tests need is missing. */
export async function requireCommands(cmds: { cmd: string; pkg: string }[]): Promise<void> {
  const missing: string[] = [];
  for (const { cmd, pkg } of cmds) if (!(await findExecutable(cmd))) missing.push(`${cmd} (Debian package ${pkg})`);
  if (missing.length) throw new Error(`the VM tests need ${missing.join(', ')}; install with: ${APT_HINT}`);
}

export const QEMU_COMMANDS = [
  { cmd: 'qemu-system-x86_64', pkg: 'qemu-system-x86' },
  { cmd: 'qemu-img', pkg: 'qemu-utils' },
  { cmd: 'perl', pkg: 'perl-base' },
  { cmd: 'cpio', pkg: 'cpio' },
  { cmd: 'apt-get', pkg: 'apt' },
  { cmd: 'dpkg-deb', pkg: 'dpkg' },
];
export const PROCESS_COMMANDS = [
  { cmd: 'perl', pkg: 'perl-base' },
  { cmd: 'prlimit', pkg: 'util-linux' },
];

/**
 * Runs `setup` once before a file's tests. When it throws (QEMU missing, the guest cannot be
 * built), every test FAILS with that error: a failed beforeAll alone would only mark them skipped.
 */
export function prerequisites(setup: () => Promise<void>, timeoutMs = 60_000): void {
  let error: unknown = null;
  beforeAll(async () => {
    try {
      await setup();
    } catch (err) {
      error = err;
    }
  }, timeoutMs);
  beforeEach(() => {
    if (error) throw error;
  });
}

/** Builds (or finds, cached) the tiny Linux guest; fails with the script's output when it cannot. */
export async function tinyLinux(): Promise<{ vmlinuz: string; initrd: string }> {
  await requireCommands(QEMU_COMMANDS);
  const result = await new Promise<{ code: number | null; out: string }>((resolve) => {
    execFile('sh', [BUILD_SCRIPT, GUEST_DIR], { timeout: 600_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, out: `${stdout}${stderr}` });
    });
  });
  const vmlinuz = path.join(GUEST_DIR, 'vmlinuz');
  const initrd = path.join(GUEST_DIR, 'initrd.img');
  if (result.code !== 0 || !existsSync(vmlinuz) || !existsSync(initrd)) {
    throw new Error(`building the tiny Linux guest failed (exit ${result.code}): ${BUILD_SCRIPT} ${GUEST_DIR}\n${result.out}\nIt needs Debian package lists (apt-get update) and: ${APT_HINT}`);
  }
  return { vmlinuz, initrd };
}

export async function tempRoot(prefix: string): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), prefix));
}

export async function removeRoot(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Pids of live processes whose working directory is `dir` (a VM's processes run in its folder). */
export async function processesIn(dir: string): Promise<number[]> {
  const out: number[] = [];
  for (const d of await readdir('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if ((await readlink(`/proc/${d}/cwd`)) === dir) out.push(Number(d));
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

export async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A spec with test defaults. */
export function spec(name: string, over: Partial<VmSpecForDriver> & Pick<VmSpecForDriver, 'image'>): VmSpecForDriver {
  return { name, uid: `uid-${name}`, generation: 1, vcpus: 1, memoryMiB: 256, ports: [], specHash: `hash-${name}`, ...over };
}

/**
 * The compiled driver layer, for tests that run it in a separate process (a "daemon" to kill).
 * Fails when dist/ is missing or older than src/vm: `npm test` compiles first; alone, run
 * `npx tsc -p tsconfig.json`.
 */
export async function freshDistVm(): Promise<string> {
  const src = path.join(ROOT, 'src', 'vm');
  const dist = path.join(ROOT, 'dist', 'src', 'vm');
  for (const f of (await readdir(src)).filter((n) => n.endsWith('.ts') && !n.endsWith('.test.ts'))) {
    const js = path.join(dist, f.replace(/\.ts$/, '.js'));
    let jsTime = 0;
    try {
      jsTime = (await stat(js)).mtimeMs;
    } catch {
      throw new Error(`${path.relative(ROOT, js)} is missing: run \`npx tsc -p tsconfig.json\` (npm test does) before this test`);
    }
    if (jsTime < (await stat(path.join(src, f))).mtimeMs) {
      throw new Error(`${path.relative(ROOT, js)} is older than src/vm/${f}: run \`npx tsc -p tsconfig.json\` (npm test does) before this test`);
    }
  }
  return path.join(dist, 'index.js');
}
