import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ApiClient } from '../../src/api/index.js';

// Real daemons for integration tests: the compiled CLI (`npm test` runs tsc first), real
// processes, real ports on loopback, a private XDG config dir so tests never touch ~/.config.

// This file also runs compiled from dist/test/helpers (the benchmarks use it): find the checkout.
function findRoot(from: string): string {
  for (let dir = from; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'bin', 'blixard.js'))) return dir;
  }
  throw new Error(`no blixard checkout above ${from}`);
}

export const ROOT = findRoot(import.meta.dirname);
export const BIN = path.join(ROOT, 'bin', 'blixard.js');

export function requireBuild(): void {
  if (!existsSync(path.join(ROOT, 'dist', 'src', 'cli', 'main.js'))) {
    throw new Error('dist/ is missing: run `npx tsc -p tsconfig.json` (npm test does) before the integration tests');
  }
}

export async function tempDir(prefix = 'blixard-test-'): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), prefix));
}

export function testEnv(configHome: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_CONFIG_HOME: configHome, IROH_FORCE_STAGING_RELAYS: '1', NO_COLOR: '1', ...extra };
  delete env.BLIXARD_SERVER;
  delete env.BLIXARD_TOKEN;
  delete env.BLIXARD_DATA_DIR;
  return env;
}

/** How long stop() waits after SIGTERM before it kills (the daemon's own deadline is 30 s). */
const STOP_WAIT_MS = 40_000;

export interface Daemon {
  proc: ChildProcess;
  dataDir: string;
  nodeId: string;
  api: string;
  token: string;
  client: ApiClient;
  stderr(): string;
  /** SIGTERM and wait for a clean exit. */
  stop(): Promise<number | null>;
  /** SIGKILL: no chance to clean up. */
  kill(): Promise<void>;
}

export async function startDaemon(opts: {
  dataDir: string;
  configHome: string;
  args?: string[];
  timeoutMs?: number;
  /** Run through this command (e.g. `ip netns exec NS`), and with this API address. */
  prefix?: string[];
  api?: string;
  /** More environment for the daemon (e.g. BLIXARD_TEST_BUGS). */
  env?: Record<string, string>;
}): Promise<Daemon> {
  requireBuild();
  // BLIXARD_TEST_CPU_PROF=DIR: each daemon writes a V8 CPU profile there when it exits (SIGTERM).
  const prof = process.env.BLIXARD_TEST_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BLIXARD_TEST_CPU_PROF}`] : [];
  const args = [...prof, BIN, 'node', 'start', '--data-dir', opts.dataDir, '--api', opts.api ?? '127.0.0.1:0', ...(opts.args ?? ['--bootstrap'])];
  const [cmd, ...pre] = opts.prefix ?? [];
  const env = testEnv(opts.configHome, opts.env);
  const proc = cmd ? spawn(cmd, [...pre, process.execPath, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] }) : spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const ready = await new Promise<RegExpExecArray>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`daemon not ready within ${opts.timeoutMs ?? 30000} ms:\n${err}`)), opts.timeoutMs ?? 30_000);
    const check = () => {
      const m = /^ready nodeId=([0-9a-f]{64}) api=(\S+)$/m.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    };
    proc.stdout!.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited with ${code} before ready:\n${err}`));
    });
  });
  const token = (await readFile(path.join(opts.dataDir, 'token'), 'utf8')).trim();
  const client = new ApiClient({ server: ready[2]!, token });
  return {
    proc,
    dataDir: opts.dataDir,
    nodeId: ready[1]!,
    api: ready[2]!,
    token,
    client,
    stderr: () => err,
    stop: async () => {
      client.close();
      proc.kill('SIGTERM');
      // A daemon that does not stop must not outlive the test run (one stayed up 20 minutes after
      // a hook gave up on it): it is killed, and the null exit code tells the test it did not stop.
      const hung = setTimeout(() => proc.kill('SIGKILL'), STOP_WAIT_MS);
      try {
        return await exited;
      } finally {
        clearTimeout(hung);
      }
    },
    kill: async () => {
      client.close();
      proc.kill('SIGKILL');
      await exited;
    },
  };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the compiled CLI once (use sparingly: each run pays Node's start-up). */
export function cli(args: string[], opts: { configHome: string; cwd?: string; input?: string; env?: Record<string, string> }): CliResult {
  requireBuild();
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: opts.cwd ?? ROOT, env: testEnv(opts.configHome, opts.env), input: opts.input ?? '', encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Daemons leave VMs running on purpose (a restarted daemon adopts them): tests remove them. */
export async function removeVms(dataDir: string): Promise<void> {
  const { ProcessDriver, QemuDriver, driverRoot } = await import('../../src/vm/index.js');
  for (const drv of [new ProcessDriver({ root: driverRoot(dataDir, 'process') }), new QemuDriver({ root: driverRoot(dataDir, 'qemu') })]) {
    for (const o of await drv.list().catch(() => [])) await drv.delete(o.name, 0).catch(() => {});
  }
}
