import { closeSync, openSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

// A QEMU Machine Protocol client over a unix socket: JSON objects, one per line. The server
// greets first ({"QMP": ...}); the client must send `qmp_capabilities` before anything else;
// then each {"execute", "arguments", "id"} gets a {"return"|"error", "id"}, and asynchronous
// {"event", "data", "timestamp"} messages may arrive at any time in between.
//
// QEMU serves one QMP client per socket at a time (a second one connects but hears nothing
// until the first leaves), so callers keep connections short: connect, ask, close.

export interface QmpGreeting {
  version: { qemu: { major: number; minor: number; micro: number }; package: string };
  capabilities: string[];
}

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

export interface QmpStatus {
  running: boolean;
  /** running, paused, shutdown, prelaunch, inmigrate, internal-error, guest-panicked, ... */
  status: string;
}

export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`QMP ${command}: ${errorClass}: ${desc}`);
    this.name = 'QmpError';
  }
}

export interface QmpConnectOptions {
  /** Bound on connecting plus receiving the greeting plus qmp_capabilities. */
  timeoutMs?: number;
}

interface Pending {
  command: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

const MAX_SUN_PATH = 107; // sockaddr_un.sun_path is 108 bytes, NUL included

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export class QmpClient {
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Set<(e: QmpEvent) => void>();
  private closeError: Error | null = null;
  private onGreeting: ((g: QmpGreeting) => void) | null = null;
  /** Resolves when the connection is gone (QEMU exited, quit, or close()). */
  readonly closed: Promise<void>;

  private constructor(
    private readonly socket: net.Socket,
    readonly socketPath: string,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => this.onData(d));
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        const err = this.closeError ?? new Error(`QMP connection to ${socketPath} closed`);
        for (const p of this.pending.values()) {
          clearTimeout(p.timer);
          p.reject(err);
        }
        this.pending.clear();
        resolve();
      });
    });
    socket.on('error', (err) => {
      this.closeError = new Error(`QMP connection to ${socketPath} lost: ${err.message}`);
    });
  }

  /** Connects, reads the greeting and negotiates capabilities. */
  static async connect(socketPath: string, opts: QmpConnectOptions = {}): Promise<{ client: QmpClient; greeting: QmpGreeting }> {
    const timeoutMs = opts.timeoutMs ?? 5000;
    const socket = await connectUnix(socketPath, timeoutMs);
    const client = new QmpClient(socket, socketPath);
    try {
      const greeting = await withTimeout(
        new Promise<QmpGreeting>((resolve, reject) => {
          client.onGreeting = resolve;
          void client.closed.then(() => reject(client.closeError ?? new Error(`QMP ${socketPath}: closed before the greeting`)));
        }),
        timeoutMs,
        `QMP ${socketPath}: no greeting within ${timeoutMs} ms (another client connected?)`,
      );
      await client.execute('qmp_capabilities', undefined, { timeoutMs });
      return { client, greeting };
    } catch (err) {
      client.close();
      throw err;
    }
  }

  /** Runs a command; resolves with its `return` value, rejects with QmpError or on timeout. */
  execute(command: string, args?: Record<string, unknown>, opts: { timeoutMs?: number } = {}): Promise<unknown> {
    if (this.socket.destroyed) return Promise.reject(this.closeError ?? new Error(`QMP ${this.socketPath}: not connected`));
    const id = this.nextId++;
    const timeoutMs = opts.timeoutMs ?? 5000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`QMP ${command}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { command, resolve, reject, timer });
      this.socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
    });
  }

  async queryStatus(): Promise<QmpStatus> {
    const r = await this.execute('query-status');
    if (!isRecord(r) || typeof r.running !== 'boolean' || typeof r.status !== 'string') throw new Error(`QMP query-status: unexpected answer ${JSON.stringify(r)}`);
    return { running: r.running, status: r.status };
  }

  onEvent(listener: (e: QmpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The next event with this name (e.g. SHUTDOWN), or an error at timeout or disconnect. */
  waitForEvent(name: string, timeoutMs: number): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`QMP: no ${name} event within ${timeoutMs} ms`));
      }, timeoutMs);
      const off = this.onEvent((e) => {
        if (e.event !== name) return;
        clearTimeout(timer);
        off();
        resolve(e);
      });
      void this.closed.then(() => {
        clearTimeout(timer);
        off();
        reject(new Error(`QMP: connection closed before a ${name} event`));
      });
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line) this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      this.closeError = new Error(`QMP ${this.socketPath}: not JSON: ${line.slice(0, 200)}`);
      this.socket.destroy();
      return;
    }
    if (!isRecord(msg)) return;
    if (isRecord(msg.QMP)) {
      this.onGreeting?.(parseGreeting(msg.QMP));
      this.onGreeting = null;
      return;
    }
    if (typeof msg.event === 'string') {
      const e: QmpEvent = {
        event: msg.event,
        data: isRecord(msg.data) ? msg.data : {},
        timestamp: isRecord(msg.timestamp) ? { seconds: Number(msg.timestamp.seconds), microseconds: Number(msg.timestamp.microseconds) } : { seconds: 0, microseconds: 0 },
      };
      for (const l of [...this.listeners]) l(e);
      return;
    }
    const id = typeof msg.id === 'number' ? msg.id : NaN;
    const p = this.pending.get(id);
    if (!p) return; // an answer to a command that already timed out
    this.pending.delete(id);
    clearTimeout(p.timer);
    if ('return' in msg) p.resolve(msg.return);
    else if (isRecord(msg.error)) p.reject(new QmpError(p.command, String(msg.error.class), String(msg.error.desc)));
    else p.reject(new Error(`QMP ${p.command}: unexpected answer ${line.slice(0, 200)}`));
  }
}

function parseGreeting(g: Record<string, unknown>): QmpGreeting {
  const version = isRecord(g.version) ? g.version : {};
  const qemu = isRecord(version.qemu) ? version.qemu : {};
  return {
    version: { qemu: { major: Number(qemu.major), minor: Number(qemu.minor), micro: Number(qemu.micro) }, package: String(version.package ?? '') },
    capabilities: Array.isArray(g.capabilities) ? g.capabilities.map(String) : [],
  };
}

/** Connect, run `fn`, always close. */
export async function withQmp<T>(socketPath: string, fn: (c: QmpClient) => Promise<T>, opts: QmpConnectOptions = {}): Promise<T> {
  const { client } = await QmpClient.connect(socketPath, opts);
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

/**
 * Connects to a unix socket. A path longer than sun_path allows (a deep data dir) is reached
 * through /proc/self/fd/<dir fd>/<name>, which is short whatever the directory's path.
 */
async function connectUnix(socketPath: string, timeoutMs: number): Promise<net.Socket> {
  let dirFd: number | null = null;
  let target = socketPath;
  if (Buffer.byteLength(socketPath) > MAX_SUN_PATH) {
    dirFd = openSync(path.dirname(socketPath), 'r');
    target = `/proc/self/fd/${dirFd}/${path.basename(socketPath)}`;
  }
  try {
    return await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ path: target });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`QMP connect ${socketPath}: timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        s.removeAllListeners('error');
        s.on('error', () => {}); // the client attaches its own handler; none may be missing meanwhile
        resolve(s);
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`QMP connect ${socketPath}: ${err.message}`));
      });
    });
  } finally {
    if (dirFd !== null) closeSync(dirFd);
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)))]).finally(() => clearTimeout(timer));
}
