import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { P2PNodeConfig } from './p2p-node.js';

// The parent's side of test/helpers/p2p-node.ts: spawns P2P nodes as separate processes (the
// compiled dist/test/helpers/p2p-node.js), sends them commands, kills and restarts them.

function findRoot(from: string): string {
  for (let dir = from; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'tsconfig.json')) && existsSync(path.join(dir, 'src', 'p2p'))) return dir;
  }
  throw new Error(`no blixard checkout above ${from}`);
}

export const ROOT = findRoot(import.meta.dirname);
export const P2P_NODE_JS = path.join(ROOT, 'dist', 'test', 'helpers', 'p2p-node.js');

/**
 * The child runs compiled code: fail clearly when dist/ is missing, or older than the sources it
 * is built from (the harness, src/p2p, and the one file of src/images it uses), rather than test
 * yesterday's code.
 */
export function requireP2PBuild(): void {
  const rebuild = 'run `npx tsc -p tsconfig.json` (npm test does) before the multi-process P2P tests';
  if (!existsSync(P2P_NODE_JS)) throw new Error(`${path.relative(ROOT, P2P_NODE_JS)} is missing: ${rebuild}`);
  const sources = [path.join(ROOT, 'test', 'helpers', 'p2p-node.ts'), path.join(ROOT, 'src', 'images', 'hash.ts')];
  for (const f of readdirSync(path.join(ROOT, 'src', 'p2p'))) if (f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.endsWith('.d.ts')) sources.push(path.join(ROOT, 'src', 'p2p', f));
  for (const src of sources) {
    const out = path.join(ROOT, 'dist', path.relative(ROOT, src)).replace(/\.ts$/, '.js');
    if (!existsSync(out)) throw new Error(`${path.relative(ROOT, out)} is missing: ${rebuild}`);
    if (statSync(out).mtimeMs < statSync(src).mtimeMs) throw new Error(`${path.relative(ROOT, out)} is older than ${path.relative(ROOT, src)}: ${rebuild}`);
  }
}

export async function freeUdpPort(): Promise<number> {
  // A TCP probe is a good enough hint for a free UDP port on loopback in tests.
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface NodeAddrLike {
  nodeId: string;
  addresses: string[];
}

interface Pending {
  resolve: (v: Record<string, unknown>) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class P2PNodeProcess {
  nodeId = '';
  addresses: string[] = [];
  author = '';
  restored: string[] = [];
  /** Times this node was started (1 after the first start). */
  starts = 0;
  private proc: ChildProcess | null = null;
  private exited: Promise<number | null> = Promise.resolve(null);
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private err = '';

  private constructor(
    readonly name: string,
    readonly config: P2PNodeConfig,
  ) {}

  /** Starts a node process on `dir` (a new identity and port unless given) and waits until ready. */
  static async start(name: string, config: Partial<P2PNodeConfig> & { dir: string }): Promise<P2PNodeProcess> {
    requireP2PBuild();
    const full: P2PNodeConfig = { name, secretKey: randomBytes(32).toString('hex'), port: config.port ?? (await freeUdpPort()), ...config };
    const n = new P2PNodeProcess(name, full);
    await n.spawn();
    return n;
  }

  addr(): NodeAddrLike {
    return { nodeId: this.nodeId, addresses: [...this.addresses] };
  }

  get running(): boolean {
    return this.proc !== null;
  }

  stderr(): string {
    return this.err;
  }

  /** Sends one command and waits for its answer; a failed command rejects with its error. */
  async call<T = Record<string, unknown>>(op: string, args: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<T> {
    const proc = this.proc;
    if (!proc?.stdin) throw new Error(`${this.name} is not running`);
    const id = this.nextId++;
    const answer = new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name}: ${op} got no answer within ${timeoutMs} ms\n${this.tail()}`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
    });
    proc.stdin.write(`${JSON.stringify({ ...args, id, op })}\n`);
    const { id: _id, ok, error, ...result } = await answer;
    if (ok !== true) throw new Error(`${this.name}: ${op} failed: ${String(error)}`);
    return result as T;
  }

  /** SIGKILL: no chance to clean up (what a crash looks like). */
  async kill(): Promise<void> {
    if (!this.proc) return;
    this.proc.kill('SIGKILL');
    await this.exited;
  }

  /** A clean stop. */
  async stop(): Promise<void> {
    if (!this.proc) return;
    const exited = this.exited;
    this.proc.stdin?.end(); // the node shuts down when stdin closes
    const t = setTimeout(() => this.proc?.kill('SIGKILL'), 8_000);
    await exited;
    clearTimeout(t);
  }

  /** Starts the node again on its data dir, with the same key and port. */
  async restart(): Promise<void> {
    if (this.proc) throw new Error(`${this.name} is still running`);
    await this.spawn();
  }

  private tail(): string {
    return this.err.split('\n').slice(-20).join('\n');
  }

  private async spawn(): Promise<void> {
    const proc = spawn(process.execPath, [P2P_NODE_JS, JSON.stringify(this.config)], {
      env: { ...process.env, IROH_FORCE_STAGING_RELAYS: '1' }, // tests only: ~1 s start when offline
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.proc = proc;
    this.starts++;
    proc.stderr!.on('data', (d: Buffer) => {
      this.err += d.toString();
      if (this.err.length > 1 << 20) this.err = this.err.slice(-(1 << 19));
    });
    this.exited = new Promise((resolve) =>
      proc.once('exit', (code) => {
        if (this.proc === proc) this.proc = null;
        for (const [id, p] of this.pending) {
          clearTimeout(p.timer);
          p.reject(new Error(`${this.name} exited (${code}) before answering\n${this.tail()}`));
          this.pending.delete(id);
        }
        resolve(code);
      }),
    );
    const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name} not ready within 30 s\n${this.tail()}`)), 30_000);
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited (${code}) before it was ready\n${this.tail()}`));
      });
      createInterface({ input: proc.stdout! }).on('line', (line) => {
        let msg: Record<string, unknown>;
        try {
          msg = JSON.parse(line) as Record<string, unknown>;
        } catch {
          this.err += `[stdout] ${line}\n`;
          return;
        }
        if (msg.event === 'ready') {
          clearTimeout(timer);
          resolve(msg);
          return;
        }
        const p = this.pending.get(msg.id as number);
        if (!p) return;
        this.pending.delete(msg.id as number);
        clearTimeout(p.timer);
        p.resolve(msg);
      });
    });
    const r = await ready;
    this.nodeId = String(r.nodeId);
    const v4 = (r.addresses as string[]).filter((a) => a.startsWith('127.0.0.1:'));
    this.addresses = v4.length > 0 ? v4 : [`127.0.0.1:${this.config.port}`];
    this.author = String(r.author);
    this.restored = r.restored as string[];
  }
}

/** Polls until `cond` holds (async allowed); fails with `what` after `timeoutMs`. */
export async function waitUntil(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string, everyMs = 25): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface PeerHealthView {
  nodeId: string;
  connected: boolean;
  connects: number;
  rttMs: number | null;
  lastError: string | null;
}

export interface HealthView {
  nodeId: string;
  peers: PeerHealthView[];
  refused: { alpn: string; remote: string; why: string }[];
  raftFrom: Record<string, number>;
}
