import { open, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageStatus, ResourceJson, StatusJson, VmStatus } from '../../src/api/index.js';
import { blake3File } from '../../src/images/index.js';
import { cli, removeDir, removeVms, startDaemon, tempDir, type Daemon } from '../helpers/daemon.js';
import { until } from '../helpers/until.js';

// Images through real daemons (issue 6): `image push` on one node; VMs placed on two others make
// those nodes fetch the image (pieces from every node that has some) before the VMs start; `image
// ls` then lists three holders. A node's cache drops an image no VM there needs once it is over
// --image-cache-size. Content damaged on the only provider is refused, and the VM says why.

let work: string;
const nodes: Record<'a' | 'b' | 'c', Daemon> = {} as never;
const configHome = () => path.join(work, 'config');
const run = (d: Daemon, args: string[]) => cli(['--server', d.api, '--token', d.token, ...args], { configHome: configHome(), cwd: work });
const MiB = 1024 * 1024;

const WAIT_MS = 60_000;
const POLL_MS = 200;

/** An executable image of `mb` MiB: a script that prints its ready line, then a long comment. */
async function scriptImage(file: string, mb: number, tag: string): Promise<void> {
  const fh = await open(file, 'w', 0o755);
  await fh.write(`#!/bin/sh\necho ${tag}-READY\nexec sleep 100000\n#`);
  const block = Buffer.alloc(MiB, tag.charCodeAt(0));
  for (let i = 0; i < mb; i++) await fh.write(block);
  await fh.close();
}

const vmStatus = async (d: Daemon, vm: string) => (await d.client.get('VirtualMachine', vm)) as ResourceJson & { status: VmStatus };

beforeAll(async () => {
  work = await tempDir();
  nodes.a = await startDaemon({ dataDir: path.join(work, 'a'), configHome: configHome(), args: ['--bootstrap', '--name', 'a', '--labels', 'zone=a', '--hypervisor', 'process'] });
  for (const [n, extra] of [
    ['b', []],
    ['c', ['--image-cache-size', '1MB']],
  ] as const) {
    const t = (await nodes.a.client.ticket({ role: 'worker', ttlSeconds: 600 })).ticket;
    nodes[n] = await startDaemon({ dataDir: path.join(work, n), configHome: configHome(), args: ['--join', t, '--name', n, '--labels', `zone=${n}`, '--hypervisor', 'process', ...extra] });
  }
  await until('three ready nodes', async () => (await nodes.a.client.nodes()).filter((n) => n.ready).length === 3, WAIT_MS, POLL_MS);
}, 120_000);

afterAll(async () => {
  for (const d of Object.values(nodes)) await d?.stop().catch(() => {});
  for (const n of ['a', 'b', 'c']) await removeVms(path.join(work, n));
  await removeDir(work);
});

describe('images through the daemons', () => {
  it('a pushed image is fetched by the nodes its VMs are placed on, before the VMs start', async () => {
    const file = path.join(work, 'app.sh');
    await scriptImage(file, 24, 'APP');
    const push = run(nodes.a, ['image', 'push', file, '--name', 'app', '--ready-pattern', 'APP-READY', '-o', 'json']);
    expect(push.code, push.stderr).toBe(0);
    const pushed = JSON.parse(push.stdout) as { hash: string; size: number; format: string; action: string };
    expect(pushed).toMatchObject({ hash: (await blake3File(file)).hash, format: 'executable', action: 'created' });

    const vm = (name: string, zone: string) => ({ kind: 'VirtualMachine' as const, name, labels: {}, spec: { image: 'app', memoryMiB: 16, placement: { nodeSelector: { zone } } } });
    await nodes.a.client.apply({ desired: [vm('on-b', 'b'), vm('on-c', 'c')], applyset: 'apps', prune: false, maxPrune: 0, dryRun: false });
    for (const [name, node] of [
      ['on-b', nodes.b],
      ['on-c', nodes.c],
    ] as const) {
      const st = await until(`${name} Running`, async () => {
        const v = await vmStatus(nodes.a, name);
        return v.status.phase === 'Running' ? v : undefined;
      }, WAIT_MS, POLL_MS);
      expect(st.status.nodeId).toBe(node.nodeId);
      expect(st.status.conditions.find((c) => c.type === 'ImageReady')?.status).toBe('True');
    }
    // Every node holds it whole now, as `image ls` (from the status document) says.
    const ls = await until('three holders', async () => {
      const r = run(nodes.a, ['image', 'ls', '-o', 'json']);
      const item = (JSON.parse(r.stdout) as { items: { name: string; hash: string; holders: string[] }[] }).items.find((i) => i.name === 'app');
      return item && item.holders.length === 3 ? item : undefined;
    }, WAIT_MS, POLL_MS);
    expect(ls.hash).toBe(pushed.hash);
    expect(ls.holders.sort()).toEqual(['a', 'b', 'c']);
    expect(run(nodes.a, ['image', 'ls']).stdout).toMatch(/^app\s+executable\s+blake3:[0-9a-f]{12}\.\.\s+24\.0MiB\s+[abc],[abc],[abc]$/m);
    // The image metrics count what came in.
    const metrics = await (await fetch(`${nodes.b.api}/metrics`, { headers: { authorization: `Bearer ${nodes.b.token}` } })).text();
    expect(metrics).toMatch(/^blixard_image_pulls_total\{result="ok",priority="vm"\} 1$/m);
  });

  it("a node's cache drops an image no VM there needs once it is past --image-cache-size", async () => {
    const hash = ((await nodes.a.client.get('Image', 'app')).status as ImageStatus).hash!;
    expect(run(nodes.a, ['delete', 'vm', 'on-c']).code).toBe(0);
    await until('c to drop the image', async () => {
      const img = (await nodes.a.client.get('Image', 'app')).status as ImageStatus;
      return !img.holders.includes(nodes.c.nodeId);
    }, WAIT_MS, POLL_MS);
    // b still runs a VM of it, and keeps it; a pushed it and keeps it (no limit there).
    const holders = ((await nodes.a.client.get('Image', 'app')).status as ImageStatus).holders;
    expect(holders.sort()).toEqual([nodes.a.nodeId, nodes.b.nodeId].sort());
    expect(hash).toMatch(/^blake3:/);
  });

  it('content damaged on the only provider is refused, and the VM says why', async () => {
    const file = path.join(work, 'bad.sh');
    await scriptImage(file, 12, 'BAD');
    expect(run(nodes.a, ['image', 'push', file, '--name', 'bad', '--format', 'executable']).code).toBe(0);
    // Flip a byte in each of a's piece files of it (what a failing disk would do).
    const dataDir = path.join(work, 'a', 'iroh', 'blobs', 'data');
    let flipped = 0;
    for (const f of await readdir(dataDir)) {
      if (!f.endsWith('.data')) continue;
      const p = path.join(dataDir, f);
      if ((await stat(p)).size < MiB) continue;
      const fh = await open(p, 'r+');
      const b = Buffer.alloc(1);
      await fh.read(b, 0, 1, 1000);
      if (b[0] === 'B'.charCodeAt(0)) {
        // a piece of bad.sh (its filler is "B"; app.sh's is "A")
        b[0] = b[0] ^ 0xff;
        await fh.write(b, 0, 1, 1000);
        flipped++;
      }
      await fh.close();
    }
    expect(flipped).toBeGreaterThan(0);
    await nodes.a.client.apply({ desired: [{ kind: 'VirtualMachine', name: 'bad-1', labels: {}, spec: { image: 'bad', memoryMiB: 16, placement: { nodeSelector: { zone: 'b' } } } }], applyset: 'bad', prune: false, maxPrune: 0, dryRun: false });
    const st = await until('the VM to say why it waits', async () => {
      const v = await vmStatus(nodes.a, 'bad-1');
      return /failed/i.test(v.status.message) ? v : undefined;
    }, 40_000, POLL_MS).catch((e: unknown) => {
      if (process.env.DEBUG_IMAGES) console.log(nodes.b.stderr().split('\n').filter((l) => /piece|image|stall/.test(l)).slice(-30).join('\n'));
      throw e;
    });
    // It says which provider failed, and that nothing was used.
    expect(st.status.phase).not.toBe('Running');
    expect(st.status.conditions.find((c) => c.type === 'ImageReady')?.status, JSON.stringify(st.status)).toBe('False');
    const s = (await nodes.b.client.status()) as StatusJson;
    expect(s.vms.running).toBe(1); // on-b only: the bad image never ran
    await writeFile(path.join(work, 'done'), '');
  });
});
