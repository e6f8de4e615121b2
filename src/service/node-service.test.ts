import { describe, expect, it } from 'vitest';
import { ApiError } from '../api/index.js';
import { NodeStoppedError, NotLeaderError, type ClusterLog } from '../raft/index.js';
import { DesiredStateStore, encodeCommand, type DesiredResource, type NodeRecord } from '../state/index.js';
import { callOf, nodeRequest, type Call } from './calls.js';
import { Changes } from './changes.js';
import { BackgroundErrors, Events } from './events.js';
import { NodeService } from './node-service.js';

// Where a call is served: a follower passes every write (and every linearizable read) on to the
// leader as the call it received, through one path (Leader.run), and serves nothing of it itself;
// the leader serves it. The log's errors keep their meaning on the way to the client.

const T = '2026-01-01T00:00:00.000Z';
const rec = (id: string): NodeRecord => ({ nodeId: id, name: `n-${id}`, role: 'voter', api: null, addresses: ['127.0.0.1:1'], labels: {}, capacity: { vcpus: 1, memoryMiB: 512 }, formats: ['executable'], registeredAt: T, updatedAt: T });

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

function fakeLog(o: { leader: boolean; propose?: () => Promise<{ index: number; result: unknown }> }): Mutable<ClusterLog> & { proposed: number } {
  const log = {
    proposed: 0,
    term: 1,
    commitIndex: 1,
    appliedIndex: 1,
    isLeader: o.leader,
    leader: o.leader ? 'me' : 'L',
    currentRole: o.leader ? 'leader' : 'follower',
    membership: { voters: ['me', 'L'], learners: [] },
    lastClusterContact: Date.now(),
    electionTimeoutMs: 200,
    propose: async () => {
      log.proposed++;
      return o.propose ? o.propose() : { index: 2, result: { ok: true, results: [], index: 2 } };
    },
    proposeConfChange: async () => ({ index: 2, result: null }),
    readBarrier: async () => {},
    recovered: async () => {},
    status: () => ({ commit: 1 }),
    campaign: () => {},
    transferLeadership: () => {},
    close: async () => {},
  } as Mutable<ClusterLog> & { proposed: number };
  return log;
}

function service(o: { leader: boolean; propose?: () => Promise<{ index: number; result: unknown }>; answer?: (to: string, call: Call) => Promise<{ status: number; body: unknown }>; heardAt?: (nodeId: string) => number | undefined }) {
  const store = new DesiredStateStore();
  store.apply(encodeCommand({ op: 'bootstrap', time: T, clusterId: 'c1', node: rec('me') }), 1);
  store.apply(encodeCommand({ op: 'registerNode', time: T, node: rec('L') }), 2);
  const log = fakeLog(o);
  const sent: [string, Call][] = [];
  const s = new NodeService({
    self: 'me',
    name: 'n-me',
    store,
    log,
    p2pOff: false,
    fallbackLeader: () => null,
    ...(o.heardAt ? { heardAt: o.heardAt } : {}),
    send: async (to, call) => {
      sent.push([to, call]);
      return o.answer ? o.answer(to, call) : { status: 200, body: { forwarded: call.op } };
    },
    admitted: (id) => id === 'L' || id === 'me',
    blobs: { has: async () => false, importStream: async () => ({ hash: '', size: 0 }) },
    transfers: () => [],
    addresses: async () => ['127.0.0.1:2'],
    apiUrl: () => 'http://127.0.0.1:1',
    vms: { report: () => undefined, consoleLog: async () => Buffer.alloc(0) },
    nodeReady: () => true,
    remoteVm: () => undefined,
    peerHealth: () => [],
    holders: () => [],
    addLearner: async () => {},
    events: new Events(),
    errors: new BackgroundErrors(),
    changes: new Changes(),
  });
  return { s, log, sent, store };
}

const desired: DesiredResource[] = [{ kind: 'Image', name: 'exe', labels: {}, spec: { blob: `blake3:${'a'.repeat(64)}`, format: 'executable' } }];

// [what, the call on the facade, the call that must reach the leader]
const writes: [string, (s: NodeService) => Promise<unknown>, Call][] = [
  ['apply', (s) => s.apply({ desired, applyset: 'default', prune: false, maxPrune: 10, dryRun: false }), { op: 'apply', req: { desired, applyset: 'default', prune: false, maxPrune: 10, dryRun: false } }],
  ['plan', (s) => s.plan({ desired, applyset: 'default', prune: false }), { op: 'plan', req: { desired, applyset: 'default', prune: false } }],
  ['delete', (s) => s.delete({ targets: [{ kind: 'VirtualMachine', name: 'x' }] }), { op: 'delete', req: { targets: [{ kind: 'VirtualMachine', name: 'x' }] } }],
  ['ticket', (s) => s.ticket({ role: 'worker', ttlSeconds: 60 }), { op: 'ticket', req: { role: 'worker', ttlSeconds: 60 } }],
  ['cordon', (s) => s.cordon('n-L', { cordoned: true }), { op: 'cordon', node: 'n-L', req: { cordoned: true } }],
  ['register', (s) => s.register(rec('me')), { op: 'register', node: rec('me') }],
  ['list (linearizable read)', (s) => s.list('VirtualMachine', false, 'app=web'), { op: 'list', kind: 'VirtualMachine', selector: 'app=web' }],
  ['get (linearizable read)', (s) => s.get('Image', 'exe'), { op: 'get', kind: 'Image', name: 'exe' }],
  ['drift', (s) => s.drift(), { op: 'drift' }],
];

describe('a follower forwards in one place', () => {
  for (const [what, call, want] of writes) {
    it(`${what}: passed on to the leader as the call it is, nothing done here`, async () => {
      const { s, log, sent } = service({ leader: false });
      expect(await call(s)).toEqual({ forwarded: want.op });
      expect(sent).toEqual([['L', want]]);
      expect(log.proposed).toBe(0);
    });
  }

  for (const [what, call] of writes) {
    it(`${what}: served on the leader, never sent`, async () => {
      const { s, sent } = service({ leader: true });
      await call(s).catch((e: unknown) => {
        // Served here: whatever the outcome, it is the leader's own answer, not a forward.
        if (!(e instanceof ApiError)) throw e;
      });
      expect(sent).toEqual([]);
    });
  }

  it('local reads never leave the node', async () => {
    const { s, sent } = service({ leader: false });
    expect((await s.list('Image', true)).map((r) => r.metadata.name)).toEqual([]);
    expect(await s.get('Image', 'exe', true)).toBeUndefined();
    expect(await s.drift(true)).toEqual([]);
    expect(sent).toEqual([]);
  });

  it('a bad selector is the caller\'s error, before anything is forwarded', async () => {
    const { s, sent } = service({ leader: false });
    await expect(s.list('VirtualMachine', false, 'app in (')).rejects.toMatchObject({ code: 'invalid' });
    expect(sent).toEqual([]);
  });
});

describe('the leader\'s answers and the log\'s errors', () => {
  it('the leader\'s error comes back as the same ApiError', async () => {
    const { s } = service({ leader: false, answer: async () => ({ status: 409, body: new ApiError('conflict', 'changed since', { conflicts: [] }).toJSON() }) });
    await expect(s.delete({ targets: [] })).rejects.toMatchObject({ code: 'conflict', message: 'changed since', details: { conflicts: [] } });
  });

  it('a leader that cannot be reached is no-leader: try again', async () => {
    const { s } = service({ leader: false, answer: async () => Promise.reject(new Error('connection lost')) });
    await expect(s.delete({ targets: [] })).rejects.toMatchObject({ code: 'no-leader', message: expect.stringMatching(/^cannot reach the leader .*: connection lost$/) });
  });

  it('an entry lost in a leader change is no-leader: try again', async () => {
    const { s } = service({ leader: true, propose: async () => Promise.reject(new NotLeaderError(null)) });
    await expect(s.delete({ targets: [] })).rejects.toMatchObject({ code: 'no-leader' });
  });

  it('a Raft node that stopped is not no-leader: asking it again will not help', async () => {
    const { s } = service({ leader: true, propose: async () => Promise.reject(new NodeStoppedError('the node is shutting down')) });
    await expect(s.delete({ targets: [] })).rejects.toMatchObject({ code: 'unreachable', exitCode: 3, message: 'the node is shutting down: ask another node' });
    const failed = service({ leader: true, propose: async () => Promise.reject(new NodeStoppedError('the Raft node stopped after a failure: EIO', new Error('EIO'))) });
    await expect(failed.s.delete({ targets: [] })).rejects.toMatchObject({ code: 'internal', exitCode: 1 });
  });
});

describe('calls from other nodes', () => {
  it('an admitted node is served; a stranger only presents a join secret', async () => {
    const { s } = service({ leader: true, propose: async () => ({ index: 2, result: { ok: false, message: 'unknown or expired join secret' } }) });
    expect(await s.serveNode(nodeRequest({ op: 'delete', req: { targets: [] } }), 'stranger')).toMatchObject({ status: 401, body: { error: { code: 'unauthorized', message: 'not admitted to this cluster' } } });
    expect(await s.serveNode({ method: 'GET', path: '/v1/status' }, 'stranger')).toMatchObject({ status: 401 });
    // Its secret is judged (here: refused by the state machine), not its admission.
    const join = await s.serveNode(nodeRequest({ op: 'join', req: { secret: 'nope', node: rec('stranger') } }), 'stranger');
    expect(join).toMatchObject({ status: 401, body: { error: { message: 'unknown or expired join secret' } } });
    // A node may only join as itself.
    expect(await s.serveNode(nodeRequest({ op: 'join', req: { secret: 'x', node: rec('other') } }), 'stranger')).toMatchObject({ status: 401, body: { error: { message: 'a node may only join as itself' } } });
    expect(await s.serveNode(nodeRequest({ op: 'delete', req: { targets: [] } }), 'L')).toMatchObject({ status: 400 });
  });

  it('a follower passes a forwarded call on (a worker forwards to any voter, which forwards again)', async () => {
    const { s, sent } = service({ leader: false });
    const call: Call = { op: 'apply', req: { desired, applyset: 'default', prune: false, maxPrune: 10, dryRun: false } };
    expect(await s.serveNode(nodeRequest(call), 'L')).toEqual({ status: 200, body: { forwarded: 'apply' } });
    expect(sent).toEqual([['L', call]]);
  });

  it('a request that is not a call is refused', async () => {
    const { s } = service({ leader: true });
    expect(await s.serveNode({ method: 'POST', path: '/v1/apply', body: {} }, 'L')).toMatchObject({ status: 404 });
    expect(callOf({ method: 'CALL', path: 'apply', body: { op: 'delete' } })).toBeUndefined();
  });
});

describe('a call waiting on a leader that is gone', () => {
  const never = () => new Promise<{ status: number; body: unknown }>(() => {});
  const del = { targets: [], requestId: 'r1' };

  it('is sent again to the new leader as soon as one is known', async () => {
    const { s, sent, log } = service({ leader: false, answer: async (to) => (to === 'L' ? never() : { status: 200, body: { from: to } }) });
    setTimeout(() => (log.leader = 'M'), 100);
    const t0 = Date.now();
    expect(await s.delete(del)).toEqual({ from: 'M' });
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(sent.map(([to, c]) => [to, c])).toEqual([['L', { op: 'delete', req: del }], ['M', { op: 'delete', req: del }]]);
  });

  it('is answered no-leader at once when the leader went silent and no new one comes', async () => {
    const { s, log } = service({ leader: false, answer: never });
    setTimeout(() => (log.lastClusterContact = Date.now() - 10_000), 100);
    const t0 = Date.now();
    await expect(s.delete(del)).rejects.toMatchObject({ code: 'no-leader', message: expect.stringMatching(/^the leader .* is gone \(no contact for 200 ms\); try again$/) });
    // One election timeout's wait for a successor (2 x 200 ms), not the RPC's 30 s.
    expect(Date.now() - t0).toBeLessThan(1_500);
  });

  it('whose connection died goes to the next leader, or is answered no-leader', async () => {
    const { s, sent, log } = service({ leader: false, answer: async (to) => (to === 'L' ? Promise.reject(new Error('connection lost')) : { status: 200, body: { from: to } }) });
    setTimeout(() => (log.leader = 'M'), 100);
    expect(await s.delete(del)).toEqual({ from: 'M' });
    // Asked once more at once (still the leader, still heard from), then the next one.
    expect(sent.map(([to]) => to)).toEqual(['L', 'L', 'M']);
    const alone = service({ leader: false, answer: async () => Promise.reject(new Error('connection lost')) });
    await expect(alone.s.delete(del)).rejects.toMatchObject({ code: 'no-leader', message: expect.stringMatching(/connection lost/) });
  });

  it('whose connection broke is asked again at once of a leader still heard from (the same request id)', async () => {
    let calls = 0;
    const { s, sent } = service({ leader: false, answer: async (to) => (++calls === 1 ? Promise.reject(new Error('the peer closed the connection')) : { status: 200, body: { from: to } }) });
    const t0 = Date.now();
    expect(await s.delete(del)).toEqual({ from: 'L' });
    expect(Date.now() - t0).toBeLessThan(100);
    expect(sent).toEqual([
      ['L', { op: 'delete', req: del }],
      ['L', { op: 'delete', req: del }],
    ]);
  });

  describe('with pings: what this node hears of the others', () => {
    // Three voters: this node, the leader L, and M. `heard` is when each last answered a ping.
    const three = (answer: (to: string) => Promise<{ status: number; body: unknown }>, heard: Record<string, number>) => {
      const x = service({ leader: false, answer, heardAt: (id) => heard[id] });
      x.log.membership = { voters: ['me', 'L', 'M'], learners: [] };
      return x;
    };
    const long = () => Date.now() - 10_000;

    it('one-way: the leader still heard by Raft but answering no ping gets the call through another voter', async () => {
      const { s, sent } = three(async (to) => (to === 'L' ? never() : { status: 200, body: { from: to } }), { L: long(), M: Date.now() + 60_000 });
      const t0 = Date.now();
      expect(await s.delete(del)).toEqual({ from: 'M' });
      expect(Date.now() - t0).toBeLessThan(500);
      expect(sent.map(([to]) => to)).toEqual(['L', 'M']);
    });

    it('one-way, and no other voter answers either: no-leader at once', async () => {
      const { s } = three(never, { L: long(), M: long() });
      const t0 = Date.now();
      // Handed to a leader that may have taken it: the outcome is not known.
      await expect(s.delete(del)).rejects.toMatchObject({ code: 'no-leader', message: expect.stringMatching(/has answered none of this node's pings for 200 ms, nor has any other voter/), details: undefined });
      expect(Date.now() - t0).toBeLessThan(500);
    });

    it('cut off from a quorum: the leader gone and no voter answering, it waits for no election', async () => {
      const heard: Record<string, number> = { L: Date.now() + 60_000, M: Date.now() + 60_000 };
      const { s, log } = three(never, heard);
      setTimeout(() => {
        log.lastClusterContact = long();
        heard.L = heard.M = long();
      }, 100);
      const t0 = Date.now();
      await expect(s.delete(del)).rejects.toMatchObject({ code: 'no-leader', details: undefined, message: expect.stringMatching(/^this node is cut off from the cluster: 2 of 3 voters have answered none of its pings for 200 ms; try another node$/) });
      // Noticed within a watch interval of the silence, not after two election timeouts more.
      expect(Date.now() - t0).toBeLessThan(350);
    });

    it('cut off with no leader known, it says the call was applied nowhere; a stepped-down leader says its write may yet be', async () => {
      const { s, log } = three(never, { L: long(), M: long() });
      log.leader = null;
      await expect(s.delete(del)).rejects.toMatchObject({ code: 'no-leader', details: { outcome: 'not-applied' }, message: expect.stringMatching(/cut off/) });
      // A leader whose proposal waits when it steps down, cut off: answered, not left to time out.
      const l = three(never, { L: long(), M: long() });
      Object.assign(l.log, { isLeader: true, leader: 'me', currentRole: 'leader', propose: () => new Promise(() => {}) });
      setTimeout(() => Object.assign(l.log, { isLeader: false, leader: null, currentRole: 'follower' }), 100);
      const t0 = Date.now();
      await expect(l.s.delete(del)).rejects.toMatchObject({ code: 'no-leader', details: { outcome: 'unknown' }, message: expect.stringMatching(/may still be applied by the next leader/) });
      expect(Date.now() - t0).toBeLessThan(1_000);
    });

    it('a failed send to a leader that Raft still hears from is answered at once, not after waiting for an election', async () => {
      const { s, log } = three(async () => Promise.reject(new Error('connection lost')), { L: Date.now() + 60_000, M: Date.now() + 60_000 });
      log.electionTimeoutMs = 2_000; // the wait for a successor would be 4 s
      const beat = setInterval(() => (log.lastClusterContact = Date.now()), 50);
      try {
        const t0 = Date.now();
        await expect(s.delete(del)).rejects.toMatchObject({ code: 'no-leader', details: undefined, message: expect.stringMatching(/^the leader \S+ is alive, but this node cannot reach it \(connection lost\); try another node$/) });
        expect(Date.now() - t0).toBeLessThan(1_000);
      } finally {
        clearInterval(beat);
      }
    });

    it('the leader gone while another voter answers: it waits for the election, as without pings', async () => {
      const heard: Record<string, number> = { L: Date.now() + 60_000, M: Date.now() + 60_000 };
      const { s, log } = three(async (to) => (to === 'L' ? never() : { status: 200, body: { from: to } }), heard);
      setTimeout(() => {
        log.lastClusterContact = long();
        heard.L = long();
      }, 100);
      setTimeout(() => (log.leader = 'M'), 300);
      expect(await s.delete(del)).toEqual({ from: 'M' });
    });
  });

  it('is served here when this node became the leader meanwhile', async () => {
    const { s, sent, log } = service({ leader: false, answer: never });
    setTimeout(() => {
      log.isLeader = true;
      log.leader = 'me';
    }, 100);
    expect(await s.delete(del)).toMatchObject({ results: [] });
    expect(sent.map(([to]) => to)).toEqual(['L']);
    expect(log.proposed).toBe(1);
  });
});
