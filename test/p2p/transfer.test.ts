import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blake3File } from '../../src/images/index.js';
import { NoProviderError, downloadBlob, shareFile } from '../../src/p2p/index.js';
import { freeUdpPort, startTestNode, type TestNode } from '../helpers/iroh.js';

// A 50 MB file shared on one node downloads on another with the same BLAKE3 hash; a dead
// provider listed first costs a short probe, not Iroh's 30 s connect timeout.

let a: TestNode, b: TestNode;
let dir: string;
beforeAll(async () => {
  [a, b] = await Promise.all([startTestNode(), startTestNode()]);
  dir = await mkdtemp(path.join(os.tmpdir(), 'blixard-transfer-'));
});
afterAll(async () => {
  await Promise.all([a, b].map((n) => n?.iroh.node.shutdown().catch(() => {})));
  await rm(dir, { recursive: true, force: true });
});

async function randomFile(file: string, bytes: number): Promise<void> {
  const out = createWriteStream(file);
  for (let left = bytes; left > 0; left -= 1 << 20) out.write(randomBytes(Math.min(left, 1 << 20)));
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

describe('blob transfer', () => {
  it('downloads a 50 MB file by hash, verified, skipping a dead first provider quickly', async () => {
    const src = path.join(dir, 'image.bin');
    await randomFile(src, 50 * 1024 * 1024);
    const want = await blake3File(src);
    const shared = await shareFile(a.iroh, src);
    expect(shared.hash).toBe(want.hash);
    expect(shared.ticket).toMatch(/^blob/);

    const dead = { nodeId: randomBytes(32).toString('hex').replace(/^./, 'a'), addresses: [`127.0.0.1:${await freeUdpPort()}`] };
    const progress: number[] = [];
    const t0 = performance.now();
    const r = await downloadBlob(b.iroh, want.hash, [dead, { nodeId: a.nodeId, addresses: a.addresses }], { connectTimeoutMs: 1000, onProgress: (p) => progress.push(p.bytes) });
    const took = performance.now() - t0;
    expect(r.provider).toBe(a.nodeId);
    expect(r.bytes).toBe(want.size);
    expect(r.skipped.map((s) => s.nodeId)).toEqual([dead.nodeId]);
    expect(took).toBeLessThan(20_000);
    expect(progress.length).toBeGreaterThan(0);
    // The bytes on b hash to the same BLAKE3 as the file on a.
    const out = path.join(dir, 'copy.bin');
    await b.iroh.blobs.writeToPath(shared.hash.slice(7), out);
    expect((await blake3File(out)).hash).toBe(want.hash);
    console.log(`50 MB: ${Math.round(took)} ms (${Math.round(50 / (took / 1000))} MB/s), dead provider skipped`);
  });

  it('fails with the reasons when no provider can serve', async () => {
    const dead = { nodeId: 'b'.repeat(64), addresses: [`127.0.0.1:${await freeUdpPort()}`] };
    const err = await downloadBlob(b.iroh, `blake3:${'c'.repeat(64)}`, [dead], { connectTimeoutMs: 500 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NoProviderError);
    expect((err as Error).message).toContain('no answer within 500 ms');
  });
});
