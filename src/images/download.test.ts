import { describe, expect, it } from 'vitest';
import { Bitmap } from './bitmap.js';
import { PieceDownload, PiecesUnavailableError, type EngineEvent, type ProviderSet } from './download.js';
import type { PieceBlobs } from './iroh-blobs.js';
import { TransferLimiter } from './limiter.js';
import type { PieceManifest } from './pieces.js';

// The download engine against a simulated network: providers that send at a given speed, die
// mid-transfer (no goodbye: the download hangs, as iroh's does until QUIC's idle timeout), or
// refuse. Real timers, small numbers: each test runs in well under a second.

const PIECE = 64 * 1024;

interface SimProvider {
  has: (hex: string) => boolean;
  /** Bytes per ms. */
  speed: number;
  dead?: boolean;
  /** Dies after sending this many bytes in total. */
  dieAfter?: number;
  refuse?: boolean;
  /** Its connection drops once after this many bytes: every download in flight fails at once. */
  dropAfter?: number;
  sent: number;
}

class SimNet {
  readonly local = new Map<string, number>(); // hex -> bytes held (complete when = size)
  readonly calls: { hex: string; provider: string }[] = [];
  readonly providers = new Map<string, SimProvider>();
  /** Per provider, how to fail each of its downloads in flight (a connection drop). */
  private readonly inFlight = new Map<string, Set<(e: Error) => void>>();
  hangMs = 400;
  constructor(readonly sizes: Map<string, number>) {}

  blobs(): Pick<PieceBlobs, 'download' | 'isComplete'> {
    return {
      isComplete: async (hex) => (this.local.get(hex) ?? 0) >= this.sizes.get(hex)!,
      download: (hex, addr, _tag, onProgress) =>
        new Promise((resolve, reject) => {
          this.calls.push({ hex, provider: addr.nodeId });
          const p = this.providers.get(addr.nodeId)!;
          const size = this.sizes.get(hex)!;
          if (p.refuse || !p.has(hex)) return setTimeout(() => reject(new Error('not found')), 5);
          let read = 0;
          let over = false;
          const flying = this.inFlight.get(addr.nodeId) ?? new Set<(e: Error) => void>();
          this.inFlight.set(addr.nodeId, flying);
          const drop = (e: Error) => {
            over = true;
            flying.delete(drop);
            reject(e);
          };
          flying.add(drop);
          const step = () => {
            if (over) return;
            if (p.dropAfter !== undefined && p.sent >= p.dropAfter) {
              p.dropAfter = undefined;
              for (const d of [...flying]) d(new Error('A network or IO operation failed'));
              return;
            }
            if (p.dead) return void setTimeout(() => resolve({ bytesRead: read }), this.hangMs); // QUIC idle timeout
            const have = this.local.get(hex) ?? 0;
            if (have >= size) {
              flying.delete(drop);
              return resolve({ bytesRead: read });
            }
            const n = Math.min(size - have, Math.max(1, Math.round(p.speed * 5)));
            if (p.dieAfter !== undefined && p.sent + n > p.dieAfter) {
              p.dead = true;
              return step();
            }
            p.sent += n;
            read += n;
            this.local.set(hex, have + n);
            onProgress(have + n);
            setTimeout(step, 5);
          };
          setTimeout(step, 5);
        }),
    };
  }
}

function manifest(n: number): { m: PieceManifest; sizes: Map<string, number> } {
  const pieces = Array.from({ length: n }, (_, i) => i.toString(16).padStart(64, '0'));
  const sizes = new Map(pieces.map((p) => [p, PIECE]));
  return { m: { hash: `blake3:${'e'.repeat(64)}`, size: n * PIECE, pieceSize: PIECE, collection: 'f'.repeat(64), pieces }, sizes };
}

const addr = (nodeId: string) => ({ nodeId, addresses: [] });

function providers(net: SimNet, ids: string[], have: Record<string, Bitmap | 'all'> = {}): () => ProviderSet {
  return () => ({ providers: ids.map((id) => ({ nodeId: id, addr: addr(id), have: have[id] ?? 'all' })), peersFetching: [] });
}

const fast = { stallMs: 150, suspectMs: 300, unavailableTimeoutMs: 600, progressEveryMs: 20 };

describe('PieceDownload', () => {
  it('fetches every piece from two providers at once, each piece once', async () => {
    const { m, sizes } = manifest(12);
    const net = new SimNet(sizes);
    for (const id of ['A', 'B']) net.providers.set(id, { has: () => true, speed: 200, sent: 0 });
    const got: number[] = [];
    const stats = await new PieceDownload({ manifest: m, self: 'me', blobs: net.blobs(), providers: providers(net, ['A', 'B']), config: fast, onPiece: (i) => got.push(i) }).run();
    expect(got.sort((a, b) => a - b)).toEqual(Array.from({ length: 12 }, (_, i) => i));
    expect(stats.piecesFetched).toBe(12);
    expect(stats.maxProvidersAtOnce).toBe(2);
    expect(stats.perProvider.A!.pieces).toBeGreaterThanOrEqual(4);
    expect(stats.perProvider.B!.pieces).toBeGreaterThanOrEqual(4);
    expect(stats.bytesReceived).toBe(12 * PIECE);
    expect(net.calls).toHaveLength(12);
  });

  it('resumes: pieces already here are not fetched again', async () => {
    const { m, sizes } = manifest(8);
    const net = new SimNet(sizes);
    net.providers.set('A', { has: () => true, speed: 500, sent: 0 });
    for (const p of m.pieces.slice(0, 5)) net.local.set(p, PIECE);
    const have = Bitmap.of(8, [0, 1, 2, 3, 4]);
    const stats = await new PieceDownload({ manifest: m, self: 'me', blobs: net.blobs(), providers: providers(net, ['A']), config: fast, have }).run();
    expect(stats.piecesLocal).toBe(5);
    expect(stats.piecesFetched).toBe(3);
    expect(net.calls.map((c) => c.hex).sort()).toEqual(m.pieces.slice(5));
  });

  it('a provider killed mid-transfer: its pieces in flight move to another, what it sent is kept', async () => {
    const { m, sizes } = manifest(12);
    const net = new SimNet(sizes);
    net.hangMs = 2_000;
    net.providers.set('A', { has: () => true, speed: 100, sent: 0 });
    net.providers.set('B', { has: () => true, speed: 100, sent: 0, dieAfter: 4 * PIECE + PIECE / 2 });
    const events: EngineEvent[] = [];
    const t0 = performance.now();
    const stats = await new PieceDownload({ manifest: m, self: 'me', blobs: net.blobs(), providers: providers(net, ['A', 'B']), config: fast, onEvent: (e) => events.push(e) }).run();
    const took = performance.now() - t0;
    expect(stats.stalls).toBeGreaterThanOrEqual(1);
    expect(stats.hedges).toBeGreaterThanOrEqual(1);
    expect(events.some((e) => e.type === 'stall' && e.provider === 'B')).toBe(true);
    // Pieces B finished before it died stay fetched from B.
    expect(stats.perProvider.B!.pieces).toBeGreaterThanOrEqual(2);
    // Finished long before the hanging downloads would have given up.
    expect(took).toBeLessThan(net.hangMs);
    expect(stats.zombies).toBeGreaterThanOrEqual(1);
    // Bytes: the image plus at most the hedged pieces' duplicates (iroh resumes partials; here too).
    const fromA = net.providers.get('A')!.sent;
    const fromB = net.providers.get('B')!.sent;
    expect(fromA + fromB).toBe(12 * PIECE);
  });

  it('a provider that refuses: its pieces come from the other one', async () => {
    const { m, sizes } = manifest(6);
    const net = new SimNet(sizes);
    net.providers.set('A', { has: () => true, speed: 300, sent: 0 });
    net.providers.set('B', { has: () => true, speed: 300, sent: 0, refuse: true });
    const stats = await new PieceDownload({ manifest: m, self: 'me', blobs: net.blobs(), providers: providers(net, ['A', 'B']), config: fast }).run();
    expect(stats.perProvider.A!.pieces).toBe(6);
    expect(stats.failures).toBeGreaterThanOrEqual(1);
  });

  it('a dropped connection fails every piece in flight at once: one failure of its provider, not one per piece', async () => {
    // The only provider's connection breaks with several pieces in flight. Counted one per piece,
    // that was three failures "in a row" at the same instant, and the download gave up at once
    // (seen in the images bench: "every attempt failed").
    const { m, sizes } = manifest(8);
    const net = new SimNet(sizes);
    net.providers.set('A', { has: () => true, speed: 100, sent: 0, dropAfter: 2 * PIECE });
    const events: EngineEvent[] = [];
    const stats = await new PieceDownload({ manifest: m, self: 'me', blobs: net.blobs(), providers: providers(net, ['A']), config: fast, onEvent: (e) => events.push(e) }).run();
    expect(events.filter((e) => e.type === 'failure').length).toBeGreaterThanOrEqual(3); // several in flight when it broke
    expect(stats.perProvider.A!.pieces).toBe(8);
    expect([...net.local.values()].every((n) => n === PIECE)).toBe(true);
  });

  it('pieces nobody answers for: fails with what is missing, after the timeout', async () => {
    const { m, sizes } = manifest(4);
    const net = new SimNet(sizes);
    net.hangMs = 100;
    net.providers.set('A', { has: () => true, speed: 100, sent: 0, dead: true });
    const err = await new PieceDownload({ manifest: m, self: 'me', blobs: net.blobs(), providers: providers(net, ['A']), config: fast }).run().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PiecesUnavailableError);
    expect((err as Error).message).toMatch(/4 piece\(s\)/);
  });

  it('takes a piece from a node that holds part of the image, and waits for pieces nobody has yet', async () => {
    const { m, sizes } = manifest(4);
    const net = new SimNet(sizes);
    const hasP = new Set([m.pieces[0]!, m.pieces[1]!]);
    net.providers.set('P', { has: (h) => hasP.has(h), speed: 3000, sent: 0 });
    let have: Record<string, Bitmap | 'all'> = { P: Bitmap.of(4, [0, 1]) };
    const dl = new PieceDownload({ manifest: m, self: 'me', blobs: net.blobs(), providers: () => providers(net, ['P'], have)(), config: { ...fast, unavailableTimeoutMs: 5_000 } });
    const done = dl.run();
    await new Promise((r) => setTimeout(r, 200));
    expect(dl.progress().pieces).toBe(2);
    // P gets the rest and says so (a status document change): the download goes on.
    hasP.add(m.pieces[2]!);
    hasP.add(m.pieces[3]!);
    have = { P: 'all' };
    dl.poke();
    const stats = await done;
    expect(stats.perProvider.P!.pieces).toBe(4);
  });

  it('holds the rate limit', async () => {
    const { m, sizes } = manifest(10);
    const net = new SimNet(sizes);
    net.providers.set('A', { has: () => true, speed: 10_000, sent: 0 });
    const rate = 2 * 1024 * 1024; // 2 MiB/s: 640 KiB in ~0.3 s after the first piece
    const limiter = new TransferLimiter({ bytesPerSec: rate, burstBytes: PIECE });
    const t0 = performance.now();
    await new PieceDownload({ manifest: m, self: 'me', blobs: net.blobs(), providers: providers(net, ['A']), config: fast, limiter }).run();
    const took = (performance.now() - t0) / 1000;
    const achieved = (10 * PIECE) / took;
    expect(achieved).toBeLessThan(rate * 1.25);
    expect(achieved).toBeGreaterThan(rate * 0.5);
  });
});
