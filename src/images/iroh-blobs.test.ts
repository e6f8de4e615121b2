import type { Iroh, NodeAddr } from '@number0/iroh';
import { describe, expect, it } from 'vitest';
import { irohPieceBlobs } from './iroh-blobs.js';

// The deletion fence (DELETE_SETTLE_MS): a blob deleted here is not written again until the
// store has surely committed the deletion. The store itself is replaced by a recorder: the race
// it guards against lives in iroh's batching and shows only under load, so what is asserted is
// the order and spacing of the calls the store receives.

const SETTLE = 200;
const A = 'aa'.repeat(32);
const B = 'bb'.repeat(32);
const PROVIDER: NodeAddr = { nodeId: 'ae58ff8833241ac82d6ff7611046ed67b5072d142c588d0063e942d9a75502b6', addresses: ['127.0.0.1:1'] };

function recorder() {
  const t0 = performance.now();
  const calls: { op: string; at: number }[] = [];
  const rec = (op: string) => calls.push({ op, at: performance.now() - t0 });
  const iroh = {
    blobs: {
      deleteBlob: async (h: string) => rec(`delete ${h.slice(0, 4)}`),
      status: async (h: string) => {
        rec(`status ${h.slice(0, 4)}`);
        return { type: 'NotFound' };
      },
      download: async (h: string, _opts: unknown, cb: (err: Error | null, p: unknown) => Promise<void> | void) => {
        rec(`download ${h.slice(0, 4)}`);
        await cb(null, { allDone: { bytesRead: 1n } });
      },
      addBytesNamed: async () => {
        rec('addBytes');
        return { hash: A };
      },
    },
  };
  return { iroh: iroh as unknown as Iroh, calls, at: (op: string) => calls.find((c) => c.op === op)?.at };
}

describe('the iroh piece store: writes after a deletion', () => {
  it('downloads a deleted hash again only after the settle time and a store request', async () => {
    const r = recorder();
    const blobs = await irohPieceBlobs(r.iroh, { settleMs: SETTLE });
    const a = (await import('@number0/iroh')).Hash.fromString(A).toString().slice(0, 4);
    await blobs.delete(A);
    await blobs.download(A, PROVIDER, 't', () => {});
    const del = r.at(`delete ${a}`)!;
    const dl = r.at(`download ${a}`)!;
    expect(dl - del).toBeGreaterThanOrEqual(SETTLE - 5);
    const ops = r.calls.map((c) => c.op);
    expect(ops.indexOf(`status ${a}`)).toBeGreaterThan(ops.indexOf(`delete ${a}`));
    expect(ops.indexOf(`status ${a}`)).toBeLessThan(ops.indexOf(`download ${a}`));

    // Settled once is settled: the next download of it goes at once.
    const before = r.calls.length;
    await blobs.download(A, PROVIDER, 't', () => {});
    expect(r.calls.slice(before).map((c) => c.op)).toEqual([`download ${a}`]);
  });

  it('does not hold up other hashes, and settle() waits for the ones asked about', async () => {
    const r = recorder();
    const blobs = await irohPieceBlobs(r.iroh, { settleMs: SETTLE });
    await blobs.delete(A);
    const t = performance.now();
    await blobs.download(B, PROVIDER, 't', () => {});
    expect(performance.now() - t).toBeLessThan(SETTLE / 2);
    await blobs.settle([B]);
    expect(performance.now() - t).toBeLessThan(SETTLE / 2);
    await blobs.settle([B, A]);
    expect(performance.now() - t).toBeGreaterThanOrEqual(SETTLE - 5);
  });

  it('holds writes whose hash is not known beforehand (imports) until every deletion settled', async () => {
    const r = recorder();
    const blobs = await irohPieceBlobs(r.iroh, { settleMs: SETTLE });
    await blobs.addBytes(Buffer.from('x'), 't');
    expect(r.calls.map((c) => c.op)).toEqual(['addBytes']);
    await blobs.delete(B);
    await blobs.addBytes(Buffer.from('y'), 't');
    const adds = r.calls.filter((c) => c.op === 'addBytes');
    const del = r.calls.find((c) => c.op.startsWith('delete'))!.at;
    expect(adds[1]!.at - del).toBeGreaterThanOrEqual(SETTLE - 5);
  });
});
