// The window of MsgApps sent to one follower and not yet acknowledged, after etcd's
// tracker/inflights.go: a ring buffer of the last index each message carried. When it is full the
// leader stops sending to that follower until acknowledgements free slots.

export class Inflights {
  private readonly buffer: Float64Array;
  private start = 0;
  private count = 0;

  constructor(readonly size: number) {
    if (!Number.isSafeInteger(size) || size < 1) throw new RangeError(`maxInflight must be a positive integer, got ${size}`);
    this.buffer = new Float64Array(size);
  }

  /** Records a message whose last entry is `index` (indices are added in increasing order). */
  add(index: number): void {
    if (this.full()) throw new Error('cannot add into a full inflights window');
    this.buffer[(this.start + this.count) % this.size] = index;
    this.count++;
  }

  /** Frees every message up to and including `to` (the follower acknowledged it). */
  freeLE(to: number): void {
    let idx = this.start;
    let freed = 0;
    while (freed < this.count && this.buffer[idx]! <= to) {
      freed++;
      idx = (idx + 1) % this.size;
    }
    this.count -= freed;
    this.start = this.count === 0 ? 0 : idx;
  }

  /** Frees the oldest message: a heartbeat response shows the follower is alive, so let one more through. */
  freeFirstOne(): void {
    if (this.count > 0) this.freeLE(this.buffer[this.start]!);
  }

  clone(): Inflights {
    const c = new Inflights(this.size);
    c.buffer.set(this.buffer);
    c.start = this.start;
    c.count = this.count;
    return c;
  }

  full(): boolean {
    return this.count === this.size;
  }

  get length(): number {
    return this.count;
  }

  reset(): void {
    this.start = 0;
    this.count = 0;
  }
}
