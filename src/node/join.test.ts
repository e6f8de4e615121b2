import { describe, expect, it } from 'vitest';
import type { JoinTicket } from '../cluster/index.js';
import { RpcConnectError, RpcError, type RpcClient } from '../p2p/index.js';
import type { NodeRecord } from '../state/index.js';
import { joinCluster } from './join.js';
import { StartupError } from './startup-error.js';

// A join dials the node in its ticket; a node too busy to answer at once is dialled again (no
// connection: nothing was sent), for a while. A call that was sent is never sent again.

const now = new Date('2026-01-01T00:00:00.000Z');
const ticket: JoinTicket = { v: 1, cluster: 'c1', role: 'worker', secret: 's', expiresAt: '2026-01-02T00:00:00.000Z', leader: { nodeId: 'L'.repeat(64), addresses: ['127.0.0.1:1'] } };
const record = { nodeId: 'me' } as unknown as NodeRecord;
const joined = { status: 200, body: { clusterId: 'c1', role: 'worker', docs: null, members: [] } };

function rpc(script: (() => Promise<unknown>)[]): { client: RpcClient; calls: () => number } {
  let n = 0;
  return { client: { call: () => (script[n++] ?? script.at(-1)!)() } as unknown as RpcClient, calls: () => n };
}

describe('joinCluster', () => {
  it('dials the node in the ticket again while it cannot connect, then joins', async () => {
    const r = rpc([() => Promise.reject(new RpcConnectError('connect to LLLL: no answer within 3000 ms')), () => Promise.reject(new RpcConnectError('again')), () => Promise.resolve(joined)]);
    const waits: string[] = [];
    const m = await joinCluster({ ticket, rpc: r.client, self: 'me', record, now, waiting: (why) => waits.push(why) });
    expect(m.clusterId).toBe('c1');
    expect(r.calls()).toBe(3);
    expect(waits).toHaveLength(2);
  });

  it('gives up after its time, saying why, with exit code unreachable', async () => {
    const r = rpc([() => Promise.reject(new RpcConnectError('no answer within 3000 ms'))]);
    const err = await joinCluster({ ticket, rpc: r.client, self: 'me', record, now, connectForMs: 600 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StartupError);
    expect((err as Error).message).toMatch(/^--join: cannot reach the node in the ticket \(LLLLLLLLLL at 127\.0\.0\.1:1\): no answer within 3000 ms$/);
    expect(r.calls()).toBeGreaterThan(1);
  });

  it('never sends again a call that was sent', async () => {
    const r = rpc([() => Promise.reject(new RpcError('the peer sent no answer')), () => Promise.resolve(joined)]);
    await expect(joinCluster({ ticket, rpc: r.client, self: 'me', record, now })).rejects.toBeInstanceOf(StartupError);
    expect(r.calls()).toBe(1);
  });
});
