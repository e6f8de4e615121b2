import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient, type ImageStatus, type StatusJson } from '../src/api/index.js';
import { blake3File } from '../src/images/index.js';
import { ALPN, RpcClient } from '../src/p2p/index.js';
import { freeUdpPort, startTestNode } from './helpers/iroh.js';
import { cli, removeDir, removeVms, startDaemon, tempDir, type Daemon } from './helpers/daemon.js';
import { until } from './helpers/until.js';

// Three daemons on loopback form a Raft cluster over Iroh: one bootstraps, two join with
// tickets, writes go through any node, and the cluster survives its leader being killed.

let work: string;
const nodes: Daemon[] = [];
const configHome = () => path.join(work, 'config');

const WAIT_MS = 30_000;

async function listenOf(d: Daemon): Promise<string[]> {
  const { readFile } = await import('node:fs/promises');
  return [JSON.parse(await readFile(path.join(d.dataDir, 'node.json'), 'utf8')).listen as string];
}

async function ticket(d: Daemon, role: 'voter' | 'worker'): Promise<string> {
  return (await d.client.ticket({ role, ttlSeconds: 600 })).ticket;
}

beforeAll(async () => {
  work = await tempDir();
  nodes.push(await startDaemon({ dataDir: path.join(work, 'n1'), configHome: configHome(), args: ['--bootstrap', '--name', 'n1', '--hypervisor', 'process', '--vcpus', '16'] }));
  for (const name of ['n2', 'n3']) {
    const t = await ticket(nodes[0]!, 'voter');
    nodes.push(await startDaemon({ dataDir: path.join(work, name), configHome: configHome(), args: ['--join', t, '--name', name, '--hypervisor', 'process', '--vcpus', '16'] }));
  }
});

afterAll(async () => {
  for (const d of nodes) await d.stop().catch(() => {});
  for (const n of ['n1', 'n2', 'n3']) await removeVms(path.join(work, n));
  await removeDir(work);
});

describe('a three-voter cluster on loopback', () => {
  it('forms from one bootstrap and two tickets, with one leader every node agrees on', async () => {
    const statuses = await until('three voters everywhere', async () => {
      const all = await Promise.all(nodes.map((d) => d.client.status()));
      return all.every((s) => s.raft.members.filter((m) => m.role === 'voter').length === 3 && s.raft.leader) ? all : undefined;
    }, WAIT_MS);
    const leaders = new Set(statuses.map((s) => s.raft.leader));
    expect(leaders.size).toBe(1);
    expect(statuses.filter((s) => s.raft.role === 'leader')).toHaveLength(1);
    expect(statuses.map((s) => s.clusterId)).toEqual(Array(3).fill(statuses[0]!.clusterId));
    // Every node has a record with its name, and the joined ones show up as Peers named by --name.
    const peers = (await nodes[0]!.client.list('Peer')).map((p) => p.metadata.name).sort();
    expect(peers).toEqual(['n2', 'n3']);
    // Peer health as each node sees it: connected, with a round-trip time.
    await until('peers connected with an RTT', async () => {
      const s = await nodes[0]!.client.status();
      return s.peers.length === 2 && s.peers.every((p) => p.connected && p.rttMs !== null);
    }, WAIT_MS);
    const table = cli(['--server', nodes[0]!.api, '--token', nodes[0]!.token, 'get', 'peers'], { configHome: configHome() }).stdout;
    expect(table).toMatch(/^n2\s+\S+\s+voter\s+True\s+True\s+[\d.]+ms/m);
  });

  it('serves a node it never admitted nothing: a refusal on the API protocol, no connection on the others', async () => {
    const stranger = await startTestNode();
    try {
      const target = nodes[0]!;
      const addr = { nodeId: target.nodeId, addresses: await listenOf(target) };
      const rpc = new RpcClient(() => stranger.iroh.node.endpoint(), { callTimeoutMs: 5000 });
      const res = await rpc.call(addr, { method: 'GET', path: '/v1/status' });
      expect(res.status).toBe(401);
      expect(JSON.stringify(res.body)).not.toContain(target.nodeId);
      rpc.close();
      // Raft and the peer protocol close the connection at once.
      for (const alpn of [ALPN.raft, ALPN.peer]) {
        const conn = await stranger.iroh.node.endpoint().connect(addr, Buffer.from(alpn));
        expect(await conn.closed()).toMatch(/not admitted/);
      }
    } finally {
      await stranger.iroh.node.shutdown().catch(() => {});
    }
  });

  it('accepts writes on any node (followers forward to the leader) and replicates them', async () => {
    const follower = await until('a follower', async () => {
      for (const d of nodes) if ((await d.client.status()).raft.role === 'follower') return d;
      return undefined;
    }, WAIT_MS);
    const res = await follower.client.apply({
      desired: [{ kind: 'Image', name: 'img', labels: {}, spec: { blob: `blake3:${'d'.repeat(64)}`, format: 'raw' }, source: { hash: `blake3:${'d'.repeat(64)}`, size: null } }],
      applyset: 'x',
      prune: false,
      maxPrune: 0,
      dryRun: false,
    });
    expect(res.results).toEqual([{ kind: 'Image', name: 'img', action: 'created' }]);
    // Each node's own replica of the store holds it, not just the leader's.
    for (const d of nodes) {
      await until(`${d.dataDir} to apply it`, async () => (await d.client.status()).raft.appliedIndex >= res.index!, WAIT_MS);
    }
    const r = cli(['--server', nodes[2]!.api, '--token', nodes[2]!.token, 'get', 'image', 'img', '-o', 'json'], { configHome: configHome() });
    expect(JSON.parse(r.stdout).status.hash).toBe(`blake3:${'d'.repeat(64)}`);
    // A follower forwards a read to the leader with its label selector.
    expect((await follower.client.list('Image', { selector: '!app' })).map((i) => i.metadata.name)).toContain('img');
    expect(await follower.client.list('Image', { selector: 'app=none' })).toEqual([]);

    // The follower's /metrics shows its P2P side: peers, bytes per Blixard protocol (Raft, and
    // the forwarded apply), and its document views.
    const text = await (await fetch(`${follower.api}/metrics`, { headers: { authorization: `Bearer ${follower.token}` } })).text();
    const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
    expect(value(/^blixard_p2p_peers_connected (\d+)/m)).toBe(2);
    expect(value(/^blixard_p2p_bytes_total\{protocol="blixard\/raft\/1",direction="received"\} (\d+)/m)).toBeGreaterThan(0);
    expect(value(/^blixard_p2p_bytes_total\{protocol="blixard\/api\/1",direction="sent"\} (\d+)/m)).toBeGreaterThan(0);
    expect(value(/^blixard_p2p_doc_entries\{doc="cluster"\} (\d+)/m)).toBeGreaterThan(0);
    // Its own writes: heartbeats into the status document, with their size.
    expect(value(/^blixard_p2p_doc_writes_total\{doc="status"\} (\d+)/m)).toBeGreaterThan(0);
    expect(value(/^blixard_p2p_doc_write_bytes_total\{doc="status"\} (\d+)/m)).toBeGreaterThan(value(/^blixard_p2p_doc_writes_total\{doc="status"\} (\d+)/m));
    expect(value(/^blixard_p2p_doc_entries\{doc="status"\} (\d+)/m)).toBeGreaterThan(0);
    expect(value(/^blixard_p2p_doc_sync_latency_seconds_count\{doc="status"\} (\d+)/m)).toBeGreaterThan(0);
  });

  it('applies a write once when its answer is lost and the client sends it again (same request id, through a follower)', async () => {
    const follower = await until('a follower', async () => {
      for (const d of nodes) if ((await d.client.status()).raft.role === 'follower') return d;
      return undefined;
    });
    const body = {
      desired: [{ kind: 'Image', name: 'once', labels: {}, spec: { blob: `blake3:${'e'.repeat(64)}`, format: 'raw' }, source: { hash: `blake3:${'e'.repeat(64)}`, size: null } }],
      applyset: 'once',
      prune: false,
      maxPrune: 0,
      dryRun: false,
      requestId: 'req-once-1',
    };
    // The first attempt: its answer is dropped (the socket goes as soon as the answer starts).
    const { request } = await import('node:http');
    const url = new URL(`${follower.api}/v1/apply`);
    await new Promise<void>((resolve, reject) => {
      const req = request({ hostname: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { authorization: `Bearer ${follower.token}`, 'content-type': 'application/json' } }, (res) => {
        res.destroy();
        resolve();
      });
      req.on('error', reject);
      req.end(JSON.stringify(body));
    });
    const created = await until('the first attempt applied', async () => (await follower.client.get('Image', 'once').catch(() => undefined))?.metadata.resourceVersion);
    // The retry gets the first attempt's answer: created, at the index it was created at.
    const retry = await follower.client.apply(body as Parameters<ApiClient['apply']>[0]);
    expect(retry.results).toEqual([{ kind: 'Image', name: 'once', action: 'created' }]);
    expect(retry.index).toBe(created);
    expect((await follower.client.get('Image', 'once')).metadata).toMatchObject({ generation: 1, resourceVersion: created });
    // The same write as a new request is a new write: unchanged.
    const again = await follower.client.apply({ ...body, requestId: 'req-once-2' } as Parameters<ApiClient['apply']>[0]);
    expect(again.results).toEqual([{ kind: 'Image', name: 'once', action: 'unchanged' }]);
    await follower.client.delete({ targets: [{ kind: 'Image', name: 'once' }] });
  });

  it('elects a new leader when the leader is killed, and loses no acknowledged write', async () => {
    const s = await nodes[0]!.client.status();
    const leader = nodes.find((d) => d.nodeId === s.raft.leader)!;
    const rest = nodes.filter((d) => d !== leader);
    const t0 = Date.now();
    await leader.kill();
    // While it is down, a survivor gets image content: it announces it in the status document once.
    const content = path.join(work, 'content.bin');
    await writeFile(content, 'written while a node was down\n'.repeat(1000));
    const { hash } = await blake3File(content);
    const holder = rest[0]!;
    await holder.client.putBlob(hash, content);
    const next = await until('a new leader', async () => {
      const st = await Promise.all(rest.map((d) => d.client.status().catch(() => undefined)));
      return st.find((x): x is StatusJson => !!x && x.raft.role === 'leader' && x.raft.leader !== leader.nodeId);
    }, WAIT_MS).catch(async (e: unknown) => {
      if (process.env.DEBUG_CLUSTER) for (const d of rest) console.log('DEBUG', JSON.stringify((await d.client.status().catch((x: unknown) => ({ raft: String(x) }))).raft), d.stderr().split('\n').filter((l) => /"level":(40|50)|raft role/.test(l)).slice(-8).join('\n'));
      throw e;
    });
    console.log(`new leader after ${Date.now() - t0} ms`);
    expect(next.raft.leader).not.toBe(leader.nodeId);
    const survivor = rest[0]!;
    await until('every survivor to know the new leader', async () => (await Promise.all(rest.map((d) => d.client.status()))).every((x) => x.raft.leader === next.raft.leader), WAIT_MS);
    const after = await survivor.client.apply({
      desired: [{ kind: 'Image', name: 'img2', labels: {}, spec: { blob: hash, format: 'raw' }, source: { hash, size: null } }],
      applyset: 'y',
      prune: false,
      maxPrune: 0,
      dryRun: false,
    });
    expect(after.results[0]!.action).toBe('created');
    expect((await survivor.client.list('Image')).map((i) => i.metadata.name).sort()).toEqual(['img', 'img2']);
    // The killed leader comes back as a follower and catches up. From before its process starts,
    // a client keeps asking it for a read it must pass on to the leader: while it starts it
    // answers nothing it cannot serve (the calls wait), never a 503.
    const idx = nodes.indexOf(leader);
    const port = await freeUdpPort();
    const asked: number[] = [];
    const polling = { on: true };
    const poll = (async () => {
      while (polling.on) {
        try {
          const r = await fetch(`http://127.0.0.1:${port}/v1/resources/images`, { headers: { authorization: `Bearer ${leader.token}` } });
          asked.push(r.status);
          const text = await r.text();
          if (process.env.DEBUG_CLUSTER && r.status !== 200) console.log('DEBUG poll', new Date().toISOString(), r.status, text.slice(0, 200));
        } catch {
          // not listening yet
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    nodes[idx] = await startDaemon({ dataDir: leader.dataDir, configHome: configHome(), args: [], api: `127.0.0.1:${port}` });
    await new Promise((r) => setTimeout(r, 300));
    polling.on = false;
    await poll;
    expect(asked.length).toBeGreaterThan(0);
    expect(asked.filter((code) => code !== 200)).toEqual([]);
    const back = nodes[idx]!;
    await until('the old leader to catch up', async () => (await back.client.status()).raft.appliedIndex >= after.index!, WAIT_MS);
    const again = new ApiClient({ server: back.api, token: back.token });
    expect((await again.list('Image')).map((i) => i.metadata.name).sort()).toEqual(['img', 'img2']);
    again.close();
    // Its documents caught up too: it learned, from its own replica of the status document,
    // that the survivor holds the content announced while it was away.
    await until('the returning node to see the announcement it missed', async () => {
      const img = (await back.client.list('Image', { local: true })).find((i) => (i.status as ImageStatus).hash === hash);
      return img && (img.status as ImageStatus).holders.includes(holder.nodeId);
    }, 20_000).catch(() => {
      throw new Error('a restarted node never synced the status document');
    });
  });

  it('removes a voter whose Peer is deleted; a leader removed so hands leadership over first', async () => {
    const s0 = await nodes[0]!.client.status();
    const leaderId = s0.raft.leader!;
    const leaderPeer = (await nodes[0]!.client.list('Peer')).find((p) => (p.spec as { nodeId: string }).nodeId === leaderId);
    // The bootstrap node has no Peer; the others joined by ticket and got one. Remove a node that
    // has one: the leader if it has (leadership moves first), else a follower.
    const target = leaderPeer ?? (await nodes[0]!.client.list('Peer'))[0]!;
    console.log(leaderPeer ? 'removing the leader by its Peer' : 'removing a follower by its Peer');
    const targetId = (target.spec as { nodeId: string }).nodeId;
    const rest = nodes.filter((d) => d.nodeId !== targetId);
    const r = cli(['--server', rest[0]!.api, '--token', rest[0]!.token, 'delete', 'peer', target.metadata.name], { configHome: configHome() });
    expect(r.code, r.stderr).toBe(0);
    const after = await until('two voters without it', async () => {
      const st = await rest[0]!.client.status();
      const voters = st.raft.members.filter((m) => m.role === 'voter').map((m) => m.nodeId);
      return voters.length === 2 && !voters.includes(targetId) && st.raft.leader && st.raft.leader !== targetId ? st : undefined;
    }, 30_000);
    expect(after.raft.leader).not.toBe(targetId);
    // Writes go on with the two that remain.
    const w = await rest[0]!.client.apply({ desired: [{ kind: 'Image', name: 'img3', labels: {}, spec: { blob: `blake3:${'9'.repeat(64)}`, format: 'raw' }, source: { hash: `blake3:${'9'.repeat(64)}`, size: null } }], applyset: 'z', prune: false, maxPrune: 0, dryRun: false });
    expect(w.results[0]!.action).toBe('created');
    expect((await rest[0]!.client.nodes()).map((n) => n.nodeId)).not.toContain(targetId);
  });
});
