import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeSnapshotHeader, encodeSnapshotHeader, SnapshotAssembler, SnapshotTransferError, splitSnapshot } from './snapshot-transfer.js';
import { encodeMessage } from './codec.js';
import { message } from './core/index.js';

// The chunk format both transports use: split, header, and an assembler that yields the whole
// message or nothing.

describe('snapshot transfer chunks', () => {
  it('splits a message into bounded chunks and assembles it back only when whole', () => {
    const msg = randomBytes(10_000);
    const { header, chunks } = splitSnapshot(msg, 1024);
    expect(chunks.length).toBe(10);
    expect(chunks.every((c) => c.length <= 1024)).toBe(true);
    const h = decodeSnapshotHeader(encodeSnapshotHeader(header))!;
    expect(h).toEqual({ total: 10_000, crc: header.crc, chunks: 10 });
    const asm = new SnapshotAssembler(h);
    for (const [i, c] of chunks.entries()) {
      expect(() => asm.message()).toThrow(SnapshotTransferError); // never a prefix
      expect(asm.push(c)).toBe(i === chunks.length - 1);
    }
    expect(Buffer.from(asm.message()).equals(msg)).toBe(true);
  });

  it('refuses a corrupted chunk, extra bytes and a snapshot over the size limit', () => {
    const msg = randomBytes(4096);
    const { header, chunks } = splitSnapshot(msg, 1000);
    const asm = new SnapshotAssembler(header);
    for (const c of chunks) {
      const copy = Buffer.from(c);
      if (c === chunks[2]) copy[7]! ^= 1;
      asm.push(copy);
    }
    expect(() => asm.message()).toThrow('checksum');
    const over = new SnapshotAssembler(header);
    for (const c of chunks) over.push(c);
    expect(() => over.push(Buffer.alloc(1))).toThrow(SnapshotTransferError);
    expect(() => new SnapshotAssembler(header, 4095)).toThrow('limit');
  });

  it('tells a snapshot stream from a Raft message stream by its first frame', () => {
    expect(decodeSnapshotHeader(encodeMessage(message({ type: 'MsgHeartbeat', from: 'a', to: 'b', term: 1 })))).toBeNull();
    expect(decodeSnapshotHeader(Buffer.alloc(22))).toBeNull();
    expect(decodeSnapshotHeader(Buffer.from('vote for me'))).toBeNull();
  });
});
