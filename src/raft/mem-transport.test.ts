import { describe, expect, it } from 'vitest';
import { MemNetwork } from './mem-transport.js';
import { until } from '../../test/helpers/until.js';

// The in-memory transport carries snapshots as the Iroh one does: chunked, beside other messages.

// Deliveries happen on setImmediate: look again on every turn (interval 0), or a whole snapshot
// may arrive between two looks.
const WAIT_MS = 5000;

describe('MemTransport snapshots', () => {
  it('delivers a snapshot in chunks, whole, while other messages pass it', async () => {
    const net = new MemNetwork({ snapshotChunkBytes: 1024 });
    const a = net.transport('a');
    const b = net.transport('b');
    const got: string[] = [];
    const snap = Buffer.alloc(200 * 1024, 7);
    b.onReceive((_from, m) => got.push(m.length === snap.length ? 'snapshot' : Buffer.from(m).toString()));
    const done = a.sendSnapshot('b', snap);
    a.send('b', [Buffer.from('heartbeat')]);
    await until('the heartbeat', () => got.length > 0, WAIT_MS, 0);
    expect(got).toEqual(['heartbeat']); // the snapshot is still on its way
    expect(await done).toBe(true);
    expect(got).toEqual(['heartbeat', 'snapshot']);
    expect(net.snapshots).toEqual({ started: 1, completed: 1, failed: 0, chunks: 200 });
  });

  it('reports a broken transfer as failed and delivers nothing of it', async () => {
    const net = new MemNetwork({ snapshotChunkBytes: 100, onSnapshotChunk: (c) => !(c.transfer === 1 && c.chunk === 3) });
    const a = net.transport('a');
    const b = net.transport('b');
    const got: Uint8Array[] = [];
    b.onReceive((_f, m) => got.push(m));
    expect(await a.sendSnapshot('b', Buffer.alloc(1000, 1))).toBe(false);
    expect(got).toEqual([]);
    expect(await a.sendSnapshot('b', Buffer.alloc(1000, 2))).toBe(true);
    expect(got.length).toBe(1);
    expect(Buffer.from(got[0]!).equals(Buffer.alloc(1000, 2))).toBe(true);
    net.isolate('b');
    expect(await a.sendSnapshot('b', Buffer.alloc(1000, 3))).toBe(false);
    expect(net.snapshots).toMatchObject({ started: 3, completed: 1, failed: 2 });
  });

  it('tells the sender when a peer cannot be reached', async () => {
    const net = new MemNetwork();
    const a = net.transport('a');
    net.transport('b');
    const unreachable: string[] = [];
    a.onUnreachable((p) => unreachable.push(p));
    net.isolate('b');
    a.send('b', [Buffer.from('x')]);
    await until('the report', () => unreachable.length > 0, WAIT_MS, 0);
    expect(unreachable).toEqual(['b']);
  });
});
