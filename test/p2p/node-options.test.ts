import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeTicket } from '../../src/cluster/index.js';
import { RpcClient, irohNodeOptions, portFreeInBothFamilies } from '../../src/p2p/index.js';
import { cli, removeDir, removeVms, startDaemon, tempDir, type Daemon } from '../helpers/daemon.js';
import { startTestNode, type TestNode } from '../helpers/iroh.js';

// How a node's P2P side is configured: public discovery only when asked, P2P off for a node on
// its own, and an identity (node id and document author) that survives restarts.

describe('--discovery', () => {
  const base = { dir: '/x', secretKey: new Uint8Array(32), listen: '127.0.0.1:0' };
  it('none (the default) starts Iroh without discovery or relays; iroh turns them on', () => {
    const d = { Default: 'default', None: 'none' };
    expect(irohNodeOptions({ ...base, discovery: 'none' }, d).nodeDiscovery).toBe('none');
    expect(irohNodeOptions({ ...base, discovery: 'iroh' }, d).nodeDiscovery).toBe('default');
    expect(irohNodeOptions({ ...base, discovery: 'none' }, d)).toMatchObject({ enableDocs: true, ipv4Addr: '127.0.0.1:0', ipv6Addr: '[::1]:0' });
  });
});

describe('--listen', () => {
  it('binds the other family on loopback with the same port', () => {
    const d = { Default: 'default', None: 'none' };
    const base = { dir: '/x', secretKey: new Uint8Array(32), discovery: 'none' as const };
    expect(irohNodeOptions({ ...base, listen: '127.0.0.1:7000' }, d)).toMatchObject({ ipv4Addr: '127.0.0.1:7000', ipv6Addr: '[::1]:7000' });
    expect(irohNodeOptions({ ...base, listen: '[::1]:7001' }, d)).toMatchObject({ ipv4Addr: '127.0.0.1:7001', ipv6Addr: '[::1]:7001' });
  });

  it('with port 0, picks a port free in both families', async () => {
    const v4 = await portFreeInBothFamilies('127.0.0.1:0');
    expect(v4).toMatch(/^127\.0\.0\.1:[1-9]\d*$/);
    const v6 = await portFreeInBothFamilies('[::1]:0');
    expect(v6).toMatch(/^\[::1\]:[1-9]\d*$/);
    expect(await portFreeInBothFamilies('127.0.0.1:7002')).toBe('127.0.0.1:7002');
  });

  it('keeps both addresses across a restart on the port it got', async () => {
    // A peer's Iroh keeps sending to a node's last working address for seconds: had the other
    // family's port changed, a restarted node's first handshakes would go unanswered.
    const dir = await tempDir();
    const addresses = async (n: Daemon) => decodeTicket((await n.client.ticket({ role: 'voter', ttlSeconds: 60 })).ticket).leader.addresses;
    let n = await startDaemon({ dataDir: path.join(dir, 'n'), configHome: path.join(dir, 'config'), args: ['--bootstrap', '--hypervisor', 'process'] });
    try {
      const a1 = await addresses(n);
      expect(a1.length).toBe(2);
      expect(new Set(a1.map((a) => a.slice(a.lastIndexOf(':') + 1))).size).toBe(1);
      await n.stop();
      n = await startDaemon({ dataDir: path.join(dir, 'n'), configHome: path.join(dir, 'config'), args: [] });
      expect([...(await addresses(n))].sort()).toEqual([...a1].sort());
    } finally {
      await n.stop();
      await removeDir(dir);
    }
  });
});

let work: string;
let d: Daemon;
let stranger: TestNode;
const configHome = () => path.join(work, 'config');
const run = (args: string[]) => cli(['--server', d.api, '--token', d.token, ...args], { configHome: configHome(), cwd: work });

beforeAll(async () => {
  work = await tempDir();
  [d, stranger] = await Promise.all([
    startDaemon({ dataDir: path.join(work, 'solo'), configHome: configHome(), args: ['--bootstrap', '--p2p', 'off', '--hypervisor', 'process'] }),
    startTestNode(),
  ]);
});
afterAll(async () => {
  await d?.stop();
  await stranger?.iroh.node.shutdown().catch(() => {});
  await removeVms(path.join(work, 'solo'));
  await removeDir(work);
});

describe('--p2p off', () => {
  it('gives out no tickets and refuses Peers, and still runs VMs on its own', async () => {
    const t = run(['node', 'ticket']);
    expect(t.code).toBe(2);
    expect(t.stderr).toContain('--p2p off');
    const r = cli(['--server', d.api, '--token', d.token, 'apply', '-f', '-'], { configHome: configHome(), cwd: work, input: `apiVersion: blixard.dev/v1\nkind: Peer\nmetadata: { name: other }\nspec: { nodeId: ${'a'.repeat(64)}, role: voter }\n` });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('Peer/other: this node runs with --p2p off');
    const vm = cli(['--server', d.api, '--token', d.token, 'apply', '-f', '-', '--wait', '--timeout', '30s'], {
      configHome: configHome(),
      cwd: work,
      input: `apiVersion: blixard.dev/v1\nkind: Image\nmetadata: { name: sh }\nspec: { path: /bin/sh, format: executable }\n---\napiVersion: blixard.dev/v1\nkind: VirtualMachine\nmetadata: { name: alone }\nspec: { image: sh, memoryMiB: 16, restartPolicy: Never, state: Stopped }\n`,
    });
    expect(vm.code).toBe(0);
  });

  it('refuses every node on the Blixard protocols, the forwarding API included', async () => {
    const listen = JSON.parse(await readFile(path.join(d.dataDir, 'node.json'), 'utf8')).listen as string;
    const client = new RpcClient(() => stranger.iroh.node.endpoint(), { callTimeoutMs: 5000, connectTimeoutMs: 3000 });
    try {
      await expect(client.call({ nodeId: d.nodeId, addresses: [listen] }, { method: 'GET', path: '/v1/status' })).rejects.toThrow();
    } finally {
      client.close();
    }
    // Refused at the connection (a node with P2P on would answer the call, with a 401).
    const text = await (await fetch(`${d.api}/metrics`, { headers: { authorization: `Bearer ${d.token}` } })).text();
    expect(text).toMatch(/^blixard_p2p_connections_total\{protocol="blixard\/api\/1",result="refused"\} [1-9]/m);
  });

  it('keeps its node id and document author across a restart', async () => {
    const before = (await d.client.status()).nodes.find((n) => n.nodeId === d.nodeId);
    const authorFile = async () => (await d.client.nodes()).find((n) => n.nodeId === d.nodeId);
    const a1 = await authorFile();
    await d.stop();
    d = await startDaemon({ dataDir: path.join(work, 'solo'), configHome: configHome(), args: [] });
    expect(d.nodeId).toBe(before!.nodeId);
    const a2 = await authorFile();
    expect(a2?.author).toBeDefined();
    expect(a2?.author).toBe(a1?.author);
    // Still off: the setting is kept in the data dir.
    expect(run(['node', 'ticket']).code).toBe(2);
  });
});
