import { crc32 } from 'node:zlib';

// InstallSnapshot in chunks, as the transports carry it: a header (total size and CRC32 of the
// whole encoded MsgSnap), then the message cut into chunks of at most `chunkBytes`, then one ack
// byte from the receiver once the whole message, checked, was handed to its Raft node.
//
// Why in the transport and not in the core (etcd does the same: its core sends one MsgSnap and its
// rafthttp streams it on a connection of its own, then calls ReportSnapshot):
// - The snapshot must not block the Raft stream. A transfer of its own (a QUIC stream per
//   snapshot, at a lower priority than the Raft stream) lets heartbeats, votes and appends pass a
//   transfer of any size. Chunks carried as MsgSnaps on the Raft stream would queue behind one
//   another and in front of everything else, and chunking in the core would need its own flow
//   control to keep them from doing so.
// - The core stays small and the simulator checks it as it is: it already models a transport that
//   delivers a snapshot whole or not at all and reports which (reportSnapshot), and a snapshot
//   that nobody reports on expires after a few election timeouts (Raft.expireSnapshots).
// - The follower never sees a partial snapshot: the receiver assembles the chunks, checks size
//   and checksum, and only then hands the message to the node. An interrupted transfer is
//   reported as failed; the leader probes again and sends the snapshot anew (from the start: the
//   snapshot it sends next may be a newer one, and a resumed transfer would have to pin the old
//   one on both sides).

/** Default size of one chunk; small enough that other streams interleave, big enough to be cheap. */
export const SNAPSHOT_CHUNK_BYTES = 1024 * 1024;

/** The first frame of a snapshot stream starts with this. A Raft message's first byte is < 16. */
const MAGIC = Buffer.from([0x89, 0x42, 0x58, 0x53, 0x4e, 0x41, 0x50, 0x01]); // "\x89BXSNAP\x01"
const HEADER_BYTES = MAGIC.length + 6 + 4 + 4;

export const SNAPSHOT_ACK_OK = 1;
export const SNAPSHOT_ACK_REFUSED = 0;

export interface SnapshotHeader {
  /** Bytes of the whole message. */
  total: number;
  /** CRC32 of the whole message. */
  crc: number;
  /** How many chunks follow. */
  chunks: number;
}

export class SnapshotTransferError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SnapshotTransferError';
  }
}

/** The header and the chunks (views into `message`, not copies) of one transfer. */
export function splitSnapshot(message: Uint8Array, chunkBytes = SNAPSHOT_CHUNK_BYTES): { header: SnapshotHeader; chunks: Uint8Array[] } {
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 1) throw new RangeError(`snapshot chunk size must be a positive integer, got ${chunkBytes}`);
  const chunks: Uint8Array[] = [];
  for (let off = 0; off < message.length; off += chunkBytes) chunks.push(message.subarray(off, Math.min(message.length, off + chunkBytes)));
  return { header: { total: message.length, crc: crc32(message), chunks: chunks.length }, chunks };
}

export function encodeSnapshotHeader(h: SnapshotHeader): Buffer {
  const b = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(b, 0);
  b.writeUIntLE(h.total, MAGIC.length, 6);
  b.writeUInt32LE(h.crc, MAGIC.length + 6);
  b.writeUInt32LE(h.chunks, MAGIC.length + 10);
  return b;
}

/** The header, if `frame` is the first frame of a snapshot stream; null for anything else. */
export function decodeSnapshotHeader(frame: Uint8Array): SnapshotHeader | null {
  if (frame.length !== HEADER_BYTES) return null;
  const b = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  if (!b.subarray(0, MAGIC.length).equals(MAGIC)) return null;
  return { total: b.readUIntLE(MAGIC.length, 6), crc: b.readUInt32LE(MAGIC.length + 6), chunks: b.readUInt32LE(MAGIC.length + 10) };
}

/**
 * The receiving end of one transfer: takes the chunks in order and gives the message back only
 * when all of it arrived and its checksum matches. Never yields a prefix.
 */
export class SnapshotAssembler {
  private readonly parts: Uint8Array[] = [];
  private bytes = 0;

  constructor(
    readonly header: SnapshotHeader,
    maxBytes = Number.MAX_SAFE_INTEGER,
  ) {
    if (header.total > maxBytes) throw new SnapshotTransferError(`a snapshot of ${header.total} bytes is over the ${maxBytes}-byte limit`);
    if (header.chunks !== 0 && header.total === 0) throw new SnapshotTransferError('an empty snapshot announced with chunks');
  }

  get received(): number {
    return this.bytes;
  }

  get complete(): boolean {
    return this.parts.length === this.header.chunks && this.bytes === this.header.total;
  }

  /** Adds the next chunk; true once the last one arrived. */
  push(chunk: Uint8Array): boolean {
    if (this.parts.length >= this.header.chunks) throw new SnapshotTransferError(`more than the ${this.header.chunks} chunks announced`);
    if (this.bytes + chunk.length > this.header.total) throw new SnapshotTransferError(`more than the ${this.header.total} bytes announced`);
    this.parts.push(chunk);
    this.bytes += chunk.length;
    return this.complete;
  }

  /** The whole message; throws unless complete and intact. */
  message(): Uint8Array {
    if (!this.complete) throw new SnapshotTransferError(`snapshot incomplete: ${this.parts.length}/${this.header.chunks} chunks, ${this.bytes}/${this.header.total} bytes`);
    const whole = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.bytes);
    if (crc32(whole) !== this.header.crc) throw new SnapshotTransferError('snapshot checksum mismatch');
    return whole;
  }
}
