// --max-transfer-rate: one token bucket for all of a node's image downloads. iroh-blobs gives no
// control over a transfer once it runs, so the limiter paces when pieces START: a piece may start
// when the bucket holds a piece's worth of tokens (its size, or the burst if smaller), and takes
// its size from the bucket (which may go below zero). Over any stretch longer than a piece, the
// bytes started stay within rate x time + one burst. Waiters are served by priority, then in
// order: pieces of images that VMs wait for ('vm') go before cache warming ('warm').

export type Priority = 'vm' | 'warm';
const RANK: Record<Priority, number> = { vm: 0, warm: 1 };

export interface LimiterClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(t: unknown): void;
}

export const realClock: LimiterClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout),
};

export class AbortedError extends Error {
  constructor(what = 'aborted') {
    super(what);
    this.name = 'AbortError';
  }
}

interface Waiter {
  bytes: number;
  rank: number;
  seq: number;
  resolve: () => void;
  reject: (e: Error) => void;
  cleanup: () => void;
}

export interface LimiterOptions {
  /** Bytes per second; null: unlimited. */
  bytesPerSec: number | null;
  /** Tokens the bucket holds at most (default: 8 MiB, one piece). */
  burstBytes?: number;
  clock?: LimiterClock;
}

export class TransferLimiter {
  private rate: number | null;
  private readonly burst: number;
  private readonly clock: LimiterClock;
  private tokens: number;
  private last: number;
  private readonly queue: Waiter[] = [];
  private seq = 0;
  private timer: unknown;
  /** Bytes granted so far, by priority. */
  readonly granted: Record<Priority, number> = { vm: 0, warm: 0 };

  constructor(o: LimiterOptions) {
    this.rate = o.bytesPerSec && o.bytesPerSec > 0 ? o.bytesPerSec : null;
    this.burst = o.burstBytes ?? 8 * 1024 * 1024;
    this.clock = o.clock ?? realClock;
    this.tokens = this.burst;
    this.last = this.clock.now();
  }

  get bytesPerSec(): number | null {
    return this.rate;
  }

  setRate(bytesPerSec: number | null): void {
    this.refill();
    this.rate = bytesPerSec && bytesPerSec > 0 ? bytesPerSec : null;
    this.pump();
  }

  /** How many are waiting (for status). */
  get waiting(): number {
    return this.queue.length;
  }

  /** Resolves when `bytes` may start moving. */
  acquire(bytes: number, priority: Priority = 'vm', signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(new AbortedError());
    if (this.rate === null && this.queue.length === 0) {
      this.granted[priority] += bytes;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        const i = this.queue.indexOf(w);
        if (i >= 0) this.queue.splice(i, 1);
        reject(new AbortedError());
        this.pump();
      };
      const w: Waiter = {
        bytes,
        rank: RANK[priority],
        seq: this.seq++,
        resolve: () => {
          this.granted[priority] += bytes;
          resolve();
        },
        reject,
        cleanup: () => signal?.removeEventListener('abort', onAbort),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      // Highest priority first, then first come.
      let i = this.queue.length;
      while (i > 0 && (this.queue[i - 1]!.rank > w.rank || (this.queue[i - 1]!.rank === w.rank && this.queue[i - 1]!.seq > w.seq))) i--;
      this.queue.splice(i, 0, w);
      this.pump();
    });
  }

  private refill(): void {
    const now = this.clock.now();
    if (this.rate !== null) this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
  }

  private pump(): void {
    if (this.timer !== undefined) {
      this.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.refill();
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      if (this.rate === null) {
        this.queue.shift();
        head.cleanup();
        head.resolve();
        continue;
      }
      const need = Math.min(head.bytes, this.burst);
      if (this.tokens + 1e-6 < need) {
        const ms = Math.max(1, Math.ceil(((need - this.tokens) / this.rate) * 1000));
        this.timer = this.clock.setTimeout(() => {
          this.timer = undefined;
          this.pump();
        }, ms);
        return;
      }
      this.tokens -= head.bytes;
      this.queue.shift();
      head.cleanup();
      head.resolve();
    }
  }
}
