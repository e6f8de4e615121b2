import type { RecvStream, SendStream } from '@number0/iroh';

// Length-prefixed frames over an Iroh QUIC stream. Writes are batched: frames queued while a
// write is in flight go out together in one write (one native call), which is what turns
// ~15-20k unbatched messages per second into ~1M. Reads pull big chunks and split them.

const HEADER = 4;
/** A single frame may not exceed this: a corrupt or hostile length must not allocate gigabytes. */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;
const READ_CHUNK = 256 * 1024;

export class FrameWriter {
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private waiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private writing = false;
  private failed: Error | null = null;
  bytesWritten = 0;
  writes = 0;

  constructor(private readonly send: SendStream) {}

  /** Queues a frame; the returned promise settles when the write carrying it is done. */
  write(frame: Uint8Array): Promise<void> {
    return this.writeMany([frame]);
  }

  /** Queues several frames behind one promise (cheaper than one promise per frame). */
  writeMany(frames: readonly Uint8Array[]): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    for (const frame of frames) {
      if (frame.length > MAX_FRAME_BYTES) return Promise.reject(new Error(`frame of ${frame.length} bytes is over the ${MAX_FRAME_BYTES}-byte limit`));
    }
    for (const frame of frames) {
      const header = Buffer.allocUnsafe(HEADER);
      header.writeUInt32BE(frame.length, 0);
      this.queue.push(header, Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength));
      this.queuedBytes += HEADER + frame.length;
    }
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (!this.writing) void this.pump();
    return done;
  }

  private async pump(): Promise<void> {
    this.writing = true;
    while (this.queue.length > 0) {
      const batch = Buffer.concat(this.queue, this.queuedBytes);
      const waiters = this.waiters;
      this.queue = [];
      this.queuedBytes = 0;
      this.waiters = [];
      try {
        await this.send.writeAll(batch);
        this.bytesWritten += batch.length;
        this.writes++;
        for (const w of waiters) w.resolve();
      } catch (e) {
        this.failed = e instanceof Error ? e : new Error(String(e));
        for (const w of [...waiters, ...this.waiters]) w.reject(this.failed);
        this.waiters = [];
        this.queue = [];
        break;
      }
    }
    this.writing = false;
  }

  /** Waits for queued frames, then closes the sending side. */
  async finish(): Promise<void> {
    while (this.writing) await new Promise((r) => setImmediate(r));
    await this.send.finish();
  }
}

/** Yields each frame of a stream until the peer finishes it. */
export async function* readFrames(recv: RecvStream, counter?: { bytes: number }): AsyncGenerator<Buffer> {
  let buf = Buffer.alloc(0);
  const chunk = Buffer.allocUnsafe(READ_CHUNK);
  for (;;) {
    while (buf.length >= HEADER) {
      const len = buf.readUInt32BE(0);
      if (len > MAX_FRAME_BYTES) throw new Error(`frame of ${len} bytes announced, over the ${MAX_FRAME_BYTES}-byte limit`);
      if (buf.length < HEADER + len) break;
      yield buf.subarray(HEADER, HEADER + len);
      buf = buf.subarray(HEADER + len);
    }
    const n = await recv.read(chunk);
    if (n === null) {
      if (buf.length > 0) throw new Error(`stream ended inside a frame (${buf.length} bytes left over)`);
      return;
    }
    if (counter) counter.bytes += Number(n);
    buf = buf.length === 0 ? Buffer.from(chunk.subarray(0, Number(n))) : Buffer.concat([buf, chunk.subarray(0, Number(n))]);
  }
}
