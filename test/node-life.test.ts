import { spawnSync } from 'node:child_process';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, type ApplyRequest } from '../src/api/index.js';
import { encodeTicket } from '../src/node/index.js';
import { BIN, cli, removeDir, removeVms, startDaemon, tempDir, testEnv } from './helpers/daemon.js';

// A node's life on its data dir (SPEC section 4): identity and state survive restarts and
// SIGKILL; a second daemon is refused at once; flags on an existing dir are handled.

let work: string;
const configHome = () => path.join(work, 'config');

beforeAll(async () => {
  work = await tempDir();
});
afterAll(async () => {
  await removeVms(path.join(work, 'n1'));
  await removeVms(path.join(work, 'crash'));
  await removeDir(work);
});

const vmSet = (i: number): ApplyRequest => ({
  // Two VMs per apply: after a crash, each set must be there whole or not at all.
  desired: [
    { kind: 'VirtualMachine', name: `a-${i}`, labels: { n: String(i) }, spec: { image: 'base' } },
    { kind: 'VirtualMachine', name: `b-${i}`, labels: { n: String(i) }, spec: { image: 'base' } },
  ],
  applyset: `set-${i}`,
  prune: false,
  maxPrune: 0,
  dryRun: false,
});

describe('node life', () => {
  it('keeps identity and state across a restart; refuses a second daemon; ignores --bootstrap with a warning', async () => {
    const dataDir = path.join(work, 'n1');
    const d1 = await startDaemon({ dataDir, configHome: configHome(), args: ['--bootstrap', '--hypervisor', 'process'] });
    const idOffline = cli(['node', 'id', '--data-dir', dataDir], { configHome: configHome() }).stdout.trim();
    expect(idOffline).toBe(d1.nodeId);
    expect((await stat(path.join(dataDir, 'token'))).mode & 0o777).toBe(0o600);
    await d1.client.apply({ desired: [{ kind: 'Image', name: 'base', labels: {}, spec: { blob: `blake3:${'a'.repeat(64)}`, format: 'raw' }, source: { hash: `blake3:${'a'.repeat(64)}`, size: null } }], applyset: 'x', prune: false, maxPrune: 0, dryRun: false });
    await d1.client.apply(vmSet(1));
    const before = await d1.client.get('VirtualMachine', 'a-1');
    const status1 = await d1.client.status();

    // A second daemon on the same data dir exits non-zero at once, and the first keeps serving.
    const t0 = Date.now();
    const second = spawnSync(process.execPath, [BIN, 'node', 'start', '--data-dir', dataDir, '--api', '127.0.0.1:0'], { env: testEnv(configHome()), encoding: 'utf8', timeout: 20_000 });
    expect(second.status).not.toBe(0);
    expect(second.stderr).toMatch(/in use by another blixard daemon \(pid \d+\)/);
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect((await d1.client.status()).nodeId).toBe(d1.nodeId);

    expect(await d1.stop()).toBe(0);
    const d2 = await startDaemon({ dataDir, configHome: configHome() }); // --bootstrap again: ignored
    try {
      expect(d2.nodeId).toBe(d1.nodeId);
      expect(d2.stderr()).toContain('--bootstrap ignored');
      const status2 = await d2.client.status();
      expect(status2.clusterId).toBe(status1.clusterId);
      expect(status2.raft.role).toBe('leader');
      const after = await d2.client.get('VirtualMachine', 'a-1');
      expect([after.metadata, after.spec]).toEqual([before.metadata, before.spec]);
      // Settings given at first start stay: no --hypervisor flag now, still the process driver only.
      expect(status2.nodes.find((n) => n.nodeId === d2.nodeId)?.formats).toEqual(['executable']);
    } finally {
      await d2.stop();
    }

    // A ticket of this cluster on an existing member: ignored with a warning. Another cluster's: an error.
    const ticket = (cluster: string) => encodeTicket({ v: 1, cluster, role: 'voter', secret: 'x'.repeat(32), expiresAt: new Date(Date.now() + 3600_000).toISOString(), leader: { nodeId: d1.nodeId, addresses: ['127.0.0.1:1'] } });
    const d3 = await startDaemon({ dataDir, configHome: configHome(), args: ['--join', ticket(status1.clusterId!)] });
    try {
      expect(d3.stderr()).toContain('--join ignored');
      expect((await d3.client.status()).clusterId).toBe(status1.clusterId);
    } finally {
      await d3.stop();
    }
    const other = spawnSync(process.execPath, [BIN, 'node', 'start', '--data-dir', dataDir, '--api', '127.0.0.1:0', '--join', ticket('another-cluster')], { env: testEnv(configHome()), encoding: 'utf8', timeout: 30_000 });
    expect(other.status).toBe(2);
    expect(other.stderr).toContain(`the ticket is for cluster another-cluster, but this data dir belongs to cluster ${status1.clusterId}`);
  });

  it('loses no acknowledged apply when SIGKILLed in the middle of 1,000 sequential applies', async () => {
    const dataDir = path.join(work, 'crash');
    const d1 = await startDaemon({ dataDir, configHome: configHome(), args: ['--bootstrap', '--hypervisor', 'process'] });
    await d1.client.apply({ desired: [{ kind: 'Image', name: 'base', labels: {}, spec: { blob: `blake3:${'b'.repeat(64)}`, format: 'raw' }, source: { hash: `blake3:${'b'.repeat(64)}`, size: null } }], applyset: 'img', prune: false, maxPrune: 0, dryRun: false });
    const killAt = 300 + Math.floor(Math.random() * 400);
    const acked: number[] = [];
    let failure: unknown;
    for (let i = 0; i < 1000; i++) {
      if (i === killAt) d1.proc.kill('SIGKILL'); // while this apply is in flight
      try {
        await d1.client.apply(vmSet(i));
        acked.push(i);
      } catch (e) {
        failure = e;
        break;
      }
    }
    await d1.kill();
    expect(failure).toBeInstanceOf(ApiError);
    expect(acked.length).toBeGreaterThanOrEqual(killAt - 1);

    const d2 = await startDaemon({ dataDir, configHome: configHome(), args: [] });
    try {
      const names = new Set((await d2.client.list('VirtualMachine')).map((r) => r.metadata.name));
      const missing = acked.filter((i) => !names.has(`a-${i}`) || !names.has(`b-${i}`));
      expect(missing).toEqual([]);
      // No half-applied set: every set is whole or absent.
      for (let i = 0; i < 1000; i++) expect(names.has(`a-${i}`)).toBe(names.has(`b-${i}`));
      // And the recovered node keeps working.
      await d2.client.apply(vmSet(5000));
      expect((await d2.client.get('VirtualMachine', 'b-5000')).metadata.generation).toBe(1);
    } finally {
      await d2.stop();
    }
  });
});
