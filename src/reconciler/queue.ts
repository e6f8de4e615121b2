// A work queue in the style of controller-runtime's: keys, not events; a key queued twice is
// queued once; a key is never worked on twice at once (added again while in flight, it runs once
// more after); failures come back after a per-key exponential backoff with jitter, and `forget`
// resets it after a success. Time comes from an injectable clock so tests need not sleep.

export interface QueueClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(t: unknown): void;
}

const realClock: QueueClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout),
};

export interface QueueOptions {
  baseDelayMs?: number;
  maxDelayMs?: number;
  concurrency?: number;
  random?: () => number;
  clock?: QueueClock;
}

export type Worker<K> = (key: K) => Promise<{ requeueAfterMs?: number } | void>;

export class WorkQueue<K> {
  private readonly ready: K[] = [];
  private readonly queued = new Set<K>();
  private readonly active = new Set<K>();
  private readonly dirty = new Set<K>();
  private readonly failures = new Map<K, number>();
  private readonly timers = new Map<K, { at: number; t: unknown }>();
  private running = 0;
  private stopped = false;
  private worker: Worker<K> | undefined;
  private onError: (key: K, err: unknown) => void = () => {};
  private idleWaiters: (() => void)[] = [];
  private readonly o: Required<QueueOptions>;

  constructor(opts: QueueOptions = {}) {
    this.o = { baseDelayMs: 500, maxDelayMs: 60_000, concurrency: 4, random: Math.random, clock: realClock, ...opts };
  }

  start(worker: Worker<K>, onError?: (key: K, err: unknown) => void): void {
    this.worker = worker;
    if (onError) this.onError = onError;
    this.pump();
  }

  stop(): void {
    this.stopped = true;
    for (const { t } of this.timers.values()) this.o.clock.clearTimeout(t);
    this.timers.clear();
  }

  add(key: K): void {
    if (this.stopped) return;
    if (this.active.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.ready.push(key);
    this.pump();
  }

  /** Adds the key after `ms`, unless it is due sooner already. */
  addAfter(key: K, ms: number): void {
    if (this.stopped) return;
    if (ms <= 0) return this.add(key);
    const at = this.o.clock.now() + ms;
    const cur = this.timers.get(key);
    if (cur && cur.at <= at) return;
    if (cur) this.o.clock.clearTimeout(cur.t);
    const t = this.o.clock.setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, ms);
    this.timers.set(key, { at, t });
  }

  /** The key failed: try again after its backoff, which doubles with every failure in a row. */
  retry(key: K): number {
    const n = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, n);
    const cap = Math.min(this.o.maxDelayMs, this.o.baseDelayMs * 2 ** Math.min(n - 1, 20));
    const delay = Math.round(cap / 2 + this.o.random() * (cap / 2));
    this.addAfter(key, delay);
    return delay;
  }

  /** The key succeeded: its next failure starts the backoff from the beginning. */
  forget(key: K): void {
    this.failures.delete(key);
  }

  failuresOf(key: K): number {
    return this.failures.get(key) ?? 0;
  }

  get length(): number {
    return this.ready.length;
  }

  /** Resolves when nothing is queued or running (timers aside): for tests. */
  idle(): Promise<void> {
    if (this.ready.length === 0 && this.running === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private pump(): void {
    while (!this.stopped && this.worker && this.running < this.o.concurrency && this.ready.length > 0) {
      const key = this.ready.shift()!;
      this.queued.delete(key);
      this.active.add(key);
      this.running++;
      void this.work(key);
    }
    if (this.ready.length === 0 && this.running === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  private async work(key: K): Promise<void> {
    try {
      const r = await this.worker!(key);
      if (r?.requeueAfterMs !== undefined) this.addAfter(key, r.requeueAfterMs);
    } catch (err) {
      // Counted first, so that the error handler reports the failure it is handling.
      this.retry(key);
      this.onError(key, err);
    } finally {
      this.active.delete(key);
      this.running--;
      if (this.dirty.delete(key)) this.add(key);
      this.pump();
    }
  }
}
