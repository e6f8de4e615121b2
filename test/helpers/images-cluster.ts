import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, statSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { ImagesNodeConfig } from './images-node.js';

// Drives images-node processes (real Iroh nodes, one per process) from tests and the benchmark:
// start them, put them on one status document, send commands, kill them.

function findRoot(from: string): string {
  for (let dir = from; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'bin', 'blixard.js'))) return dir;
  }
  throw new Error(`no blixard checkout above ${from}`);
}

export const ROOT = findRoot(import.meta.dirname);
export const NODE_JS = path.join(ROOT, 'dist', 'test', 'helpers', 'images-node.js');

function newest(dir: string, ext: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) t = Math.max(t, newest(p, ext));
    else if (e.name.endsWith(ext) && !e.name.endsWith('.test.ts')) t = Math.max(t, statSync(p).mtimeMs);
  }
  return t;
}

/** The child runs compiled code: refuse to test yesterday's build. */
export function requireFreshBuild(): void {
  if (!existsSync(NODE_JS)) throw new Error(`${NODE_JS} is missing: run \`npx tsc -p tsconfig.json\` (npm test does) first`);
  const built = statSync(NODE_JS).mtimeMs;
  const sources = Math.max(newest(path.join(ROOT, 'src', 'images'), '.ts'), statSync(path.join(ROOT, 'test', 'helpers', 'images-node.ts')).mtimeMs);
  const builtImages = newest(path.join(ROOT, 'dist', 'src', 'images'), '.js');
  if (sources > Math.min(built, builtImages) + 1000) throw new Error('dist/ is older than src/images or test/helpers/images-node.ts: run `npx tsc -p tsconfig.json` first');
}

export interface Reply {
  ok: boolean;
  error?: string;
  [k: string]: unknown;
}

export class ImagesNode {
  nodeId = '';
  addresses: string[] = [];
  author = '';
  private seq = 0;
  private readonly waiting = new Map<number, { resolve: (r: Reply) => void; onEvent?: (e: Record<string, unknown>) => void }>();
  private stderrTail: string[] = [];
  readonly exited: Promise<number | null>;
  private proc: ChildProcess;

  constructor(
    readonly name: string,
    readonly cfg: ImagesNodeConfig,
    private readonly onReady: (n: ImagesNode) => void,
    private readonly onFail: (e: Error) => void,
  ) {
    const env = { ...process.env, IROH_FORCE_STAGING_RELAYS: '1' };
    this.proc = spawn(process.execPath, [NODE_JS, JSON.stringify(cfg)], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) => this.proc.once('exit', (code) => resolve(code)));
    createInterface({ input: this.proc.stderr! }).on('line', (l) => {
      this.stderrTail.push(l);
      if (this.stderrTail.length > 50) this.stderrTail.shift();
      if (process.env.IMAGES_NODE_LOG) process.stderr.write(`[${name}] ${l}\n`);
    });
    createInterface({ input: this.proc.stdout! }).on('line', (l) => this.line(l));
    void this.exited.then((code) => {
      for (const w of this.waiting.values()) w.resolve({ ok: false, error: `${name} exited (${code})` });
      this.waiting.clear();
      this.onFail(new Error(`${name} exited with ${code} before ready:\n${this.stderrTail.join('\n')}`));
    });
  }

  private line(l: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(l) as Record<string, unknown>;
    } catch {
      // Iroh's own log (IMAGES_NODE_IROH_LOG), filtered by IMAGES_NODE_LOG_MATCH (a regex).
      if (process.env.IMAGES_NODE_LOG && new RegExp(process.env.IMAGES_NODE_LOG_MATCH ?? '').test(l)) process.stderr.write(`[${this.name}] ${l}\n`);
      return;
    }
    if (msg.event === 'ready') {
      this.nodeId = String(msg.nodeId);
      this.addresses = msg.addresses as string[];
      this.author = String(msg.author);
      this.onReady(this);
      return;
    }
    if (msg.event) {
      this.waiting.get(Number(msg.id))?.onEvent?.(msg);
      return;
    }
    const w = this.waiting.get(Number(msg.id));
    if (!w) return;
    this.waiting.delete(Number(msg.id));
    w.resolve(msg as unknown as Reply);
  }

  get addr(): { nodeId: string; addresses: string[] } {
    return { nodeId: this.nodeId, addresses: this.addresses };
  }

  /** Sends a command; resolves with the reply (ok or not). */
  send(op: string, args: Record<string, unknown> = {}, onEvent?: (e: Record<string, unknown>) => void): Promise<Reply> {
    const id = ++this.seq;
    return new Promise((resolve) => {
      this.waiting.set(id, { resolve, ...(onEvent ? { onEvent } : {}) });
      this.proc.stdin!.write(`${JSON.stringify({ id, op, ...args })}\n`);
    });
  }

  /** Sends a command; throws when it failed. */
  async call<T = Reply>(op: string, args: Record<string, unknown> = {}, onEvent?: (e: Record<string, unknown>) => void): Promise<T> {
    const r = await this.send(op, args, onEvent);
    if (!r.ok) throw new Error(`${this.name} ${op}: ${r.error}`);
    return r as T;
  }

  /** SIGKILL: no goodbye to anyone. */
  async kill(): Promise<void> {
    this.proc.kill('SIGKILL');
    await this.exited;
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.stdin!.end();
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 5_000);
    await this.exited;
    clearTimeout(t);
  }

  logs(): string {
    return this.stderrTail.join('\n');
  }
}

export async function startImagesNode(name: string, cfg: ImagesNodeConfig, timeoutMs = 30_000): Promise<ImagesNode> {
  requireFreshBuild();
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(name, cfg, timeoutMs);
    } catch (e) {
      // Others may rebuild dist/ in this checkout while a child loads it (tsc rewrites files in
      // place): a module half-written then is not our bug. Try again a few times.
      if (attempt >= 4 || !/SyntaxError|ERR_MODULE_NOT_FOUND|Unexpected end of input/.test((e as Error).message)) throw e;
      await new Promise((r) => setTimeout(r, 1500));
    }
  }
}

function startOnce(name: string, cfg: ImagesNodeConfig, timeoutMs: number): Promise<ImagesNode> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      if (!settled) reject(new Error(`${name} not ready within ${timeoutMs} ms`));
      settled = true;
    }, timeoutMs);
    new ImagesNode(
      name,
      cfg,
      (n) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(n);
      },
      (e) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

export interface StatusDoc {
  docId: string;
  ticket: string;
}

/** Puts nodes on one status document (the first creates it), trusting each other's authors. */
export async function connect(nodes: ImagesNode[]): Promise<StatusDoc> {
  const [first, ...rest] = nodes;
  if (!first) throw new Error('no nodes');
  const authors = Object.fromEntries(nodes.map((n) => [n.nodeId, n.author]));
  const peers = nodes.map((n) => n.addr);
  await Promise.all(nodes.map((n) => n.call('trust', { authors })));
  await Promise.all(nodes.map((n) => n.call('peers', { peers })));
  const doc = await first.call<StatusDoc>('create-status');
  await Promise.all(rest.map((n) => n.call('join-status', { docId: doc.docId, ticket: doc.ticket })));
  await Promise.all(nodes.map((n) => n.call('peers', { peers })));
  return { docId: doc.docId, ticket: doc.ticket };
}

/** Adds a node to nodes already on the status document. */
export async function addNode(nodes: ImagesNode[], n: ImagesNode, doc: StatusDoc): Promise<void> {
  const all = [...nodes, n];
  const authors = Object.fromEntries(all.map((x) => [x.nodeId, x.author]));
  const peers = all.map((x) => x.addr);
  await Promise.all(all.map((x) => x.call('trust', { authors })));
  await Promise.all(all.map((x) => x.call('peers', { peers })));
  await n.call('join-status', { docId: doc.docId, ticket: doc.ticket });
  await n.call('peers', { peers });
  await n.call('flush');
}

export async function workDir(prefix: string): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** A file of random bytes, written in 1 MiB chunks. */
export async function randomFile(file: string, bytes: number): Promise<void> {
  const out = createWriteStream(file);
  for (let left = bytes; left > 0; left -= 1 << 20) {
    if (!out.write(randomBytes(Math.min(left, 1 << 20)))) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}
