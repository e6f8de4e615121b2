// Which pieces of an image a node holds: one bit per piece, base64 in the status document (a
// 20 GB image in 8 MiB pieces is 2,560 bits: 320 bytes, 428 characters).

export class Bitmap {
  private constructor(
    readonly length: number,
    private readonly bits: Uint8Array,
    private ones: number,
  ) {}

  static empty(length: number): Bitmap {
    return new Bitmap(length, new Uint8Array(Math.ceil(length / 8)), 0);
  }

  static full(length: number): Bitmap {
    const b = Bitmap.empty(length);
    for (let i = 0; i < length; i++) b.set(i);
    return b;
  }

  static of(length: number, indexes: Iterable<number>): Bitmap {
    const b = Bitmap.empty(length);
    for (const i of indexes) b.set(i);
    return b;
  }

  /** Throws on text that is not a bitmap of `length` bits (bits past the end must be clear). */
  static decode(text: string, length: number): Bitmap {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) throw new Error('bitmap: not base64');
    const bytes = new Uint8Array(Buffer.from(text, 'base64'));
    if (bytes.length !== Math.ceil(length / 8)) throw new Error(`bitmap: ${bytes.length} bytes for ${length} pieces`);
    let ones = 0;
    for (let i = 0; i < bytes.length; i++) {
      let v = bytes[i]!;
      if (i === bytes.length - 1 && length % 8 !== 0 && v >> (length % 8) !== 0) throw new Error('bitmap: bits set past the last piece');
      while (v) {
        ones += v & 1;
        v >>= 1;
      }
    }
    return new Bitmap(length, bytes, ones);
  }

  has(i: number): boolean {
    return i >= 0 && i < this.length && (this.bits[i >> 3]! & (1 << (i & 7))) !== 0;
  }

  set(i: number): void {
    if (i < 0 || i >= this.length) throw new RangeError(`piece ${i} of ${this.length}`);
    if (this.has(i)) return;
    this.bits[i >> 3]! |= 1 << (i & 7);
    this.ones++;
  }

  get count(): number {
    return this.ones;
  }

  get complete(): boolean {
    return this.ones === this.length;
  }

  encode(): string {
    return Buffer.from(this.bits).toString('base64');
  }

  *indexes(): IterableIterator<number> {
    for (let i = 0; i < this.length; i++) if (this.has(i)) yield i;
  }

  clone(): Bitmap {
    return new Bitmap(this.length, this.bits.slice(), this.ones);
  }
}
