import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiClient } from './client.js';
import { ApiError } from './errors.js';

// The client against a real HTTP server on loopback that answers as a script says: it asks again
// while the cluster has no leader, or when a connection broke after a repeatable call was sent,
// always with the same request id; it gives up at once on an address where nothing listens.

let servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  servers = [];
});

type Step = 'no-leader' | 'slow-no-leader' | 'not-applied' | 'drop' | 'die' | 'ok';

async function scripted(steps: Step[]): Promise<{ url: string; bodies: unknown[] }> {
  const bodies: unknown[] = [];
  const server = createServer(async (req: IncomingMessage, res) => {
    let text = '';
    for await (const c of req) text += String(c);
    bodies.push(text ? JSON.parse(text) : null);
    const step = steps.shift() ?? 'ok';
    if (step === 'drop') return void res.socket?.destroy();
    if (step === 'die') {
      // The node dies with the answer: the connection breaks, and nothing listens any more.
      server.close();
      server.closeAllConnections();
      return;
    }
    if (step === 'slow-no-leader') await new Promise((r) => setTimeout(r, 800));
    if (step === 'not-applied') {
      res.writeHead(503, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify(new ApiError('no-leader', 'this node is cut off from the cluster', { outcome: 'not-applied' }).toJSON()));
    }
    if (step === 'no-leader' || step === 'slow-no-leader') {
      if (res.destroyed) return;
      res.writeHead(503, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify(new ApiError('no-leader', 'no leader is known right now; try again in a moment').toJSON()));
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ planId: 'p', dryRun: false, index: 7, results: [] }));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, bodies };
}

const apply = { desired: [], applyset: 'default', prune: false, maxPrune: 0, dryRun: false };

describe('ApiClient retries', () => {
  it('asks again while there is no leader, with the same request id, until it is taken', async () => {
    const { url, bodies } = await scripted(['no-leader', 'no-leader', 'ok']);
    const c = new ApiClient({ server: url, retryMs: 5_000 });
    expect(await c.apply(apply)).toMatchObject({ index: 7 });
    expect(bodies).toHaveLength(3);
    const ids = bodies.map((b) => (b as { requestId: string }).requestId);
    expect(ids[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(new Set(ids).size).toBe(1);
    c.close();
  });

  it('sends a write again after its connection broke mid-call (it has an id); a plan without one is not', async () => {
    const { url, bodies } = await scripted(['drop', 'ok', 'drop']);
    const c = new ApiClient({ server: url, retryMs: 5_000 });
    expect(await c.delete({ targets: [] })).toMatchObject({ index: 7 });
    expect(bodies).toHaveLength(2);
    expect((bodies[0] as { requestId: string }).requestId).toBe((bodies[1] as { requestId: string }).requestId);
    c.close();
    // (A fresh client: on a reused keep-alive socket a reset is taken for the server closing it
    // idle, and the call is sent again before any retry rule is asked.)
    const fresh = new ApiClient({ server: url, retryMs: 5_000 });
    await expect(fresh.plan({ desired: [], applyset: 'default', prune: false })).rejects.toMatchObject({ code: 'unreachable' });
    expect(bodies).toHaveLength(3);
    fresh.close();
  });

  it('says a write may have been applied when its node died after taking it (refused on the retry)', async () => {
    const { url, bodies } = await scripted(['die']);
    const c = new ApiClient({ server: url, retryMs: 5_000 });
    const err = await c.apply(apply).then(
      () => undefined,
      (e: unknown) => e as ApiError,
    );
    expect(bodies).toHaveLength(1);
    expect(err).toMatchObject({ code: 'unreachable', details: { connection: 'ECONNREFUSED', outcome: 'unknown' } });
    expect(err!.message).toContain('may have been applied');
    c.close();
    // The same over a keep-alive connection that an earlier call opened (a reset there is
    // first taken for the server closing it idle, and the call sent again at once).
    const kept = await scripted(['ok', 'die']);
    const k = new ApiClient({ server: kept.url, retryMs: 5_000 });
    await k.status();
    await expect(k.apply(apply)).rejects.toMatchObject({ code: 'unreachable', details: { outcome: 'unknown' } });
    expect(kept.bodies).toHaveLength(2);
    k.close();
    // A read that met the same is just unreachable: nothing to be unsure of.
    const again = await scripted(['die']);
    const r = new ApiClient({ server: again.url, retryMs: 5_000 });
    const readErr = await r.status().then(
      () => undefined,
      (e: unknown) => e as ApiError,
    );
    expect(readErr).toMatchObject({ code: 'unreachable', details: { connection: 'ECONNREFUSED' } });
    expect((readErr!.details as { outcome?: string }).outcome).toBeUndefined();
    r.close();
  });

  it('gives up when the time is spent, and never waits on an address where nothing listens', async () => {
    const { url, bodies } = await scripted(Array<Step>(100).fill('no-leader'));
    const c = new ApiClient({ server: url, retryMs: 600 });
    const t0 = Date.now();
    await expect(c.apply(apply)).rejects.toMatchObject({ code: 'no-leader' });
    expect(Date.now() - t0).toBeLessThan(3_000);
    expect(bodies.length).toBeGreaterThan(1);
    c.close();

    const nobody = new ApiClient({ server: 'http://127.0.0.1:1', retryMs: 10_000 });
    const t1 = Date.now();
    await expect(nobody.status()).rejects.toMatchObject({ code: 'unreachable' });
    expect(Date.now() - t1).toBeLessThan(2_000);
    nobody.close();
  });

  it('a node saying "applied nowhere" speaks for its own attempt only: after one that broke mid-call, the outcome is unknown', async () => {
    const { url } = await scripted(['not-applied', 'not-applied']);
    const c = new ApiClient({ server: url, retryMs: 300 });
    await expect(c.delete({ targets: [], requestId: 'r1' })).rejects.toMatchObject({ code: 'no-leader', details: { outcome: 'not-applied' } });
    c.close();
    const broke = await scripted(['drop', ...Array<Step>(20).fill('not-applied')]);
    const d = new ApiClient({ server: broke.url, retryMs: 300 });
    await expect(d.delete({ targets: [], requestId: 'r2' })).rejects.toMatchObject({ code: 'no-leader', details: { outcome: 'unknown' } });
    d.close();
  });

  it('ends the whole call by its deadline: the last attempt gets only the time left', async () => {
    const { url, bodies } = await scripted(Array<Step>(10).fill('slow-no-leader'));
    const c = new ApiClient({ server: url, timeoutMs: 5_000, retryMs: 1_000 });
    const t0 = Date.now();
    await expect(c.apply(apply)).rejects.toBeInstanceOf(ApiError);
    // A second attempt starts about 0.9 s in; left whole, it would end about 1.7 s in.
    expect(Date.now() - t0).toBeLessThan(1_300);
    expect(bodies.length).toBe(2);
    c.close();
  });

  it('without retryMs, the first answer is the answer', async () => {
    const { url, bodies } = await scripted(['no-leader', 'ok']);
    const c = new ApiClient({ server: url });
    await expect(c.apply(apply)).rejects.toMatchObject({ code: 'no-leader' });
    expect(bodies).toHaveLength(1);
    c.close();
  });
});
