import type { Iroh, NodeAddr } from '@number0/iroh';
import type { P2PMetrics } from './metrics.js';
import { connectWithTimeout } from './peers.js';

// Moving content between nodes with Iroh blobs: share a file and get a ticket; download a blob by
// hash from the peers that have it. iroh-blobs fetches one blob from the first listed provider
// only, and a dead one costs its 30 s connect timeout, so each provider is first probed on the
// blobs ALPN with a short timeout and dead ones are skipped. Content is verified against its
// BLAKE3 hash while it streams (BAO): what lands in the store is what the hash names.

/** The ALPN iroh-blobs 0.35 serves on. */
export const BLOBS_ALPN = '/iroh-bytes/4';

export interface DownloadProgress {
  provider: string;
  bytes: number;
  total: number | null;
}

export interface DownloadResult {
  hash: string;
  provider: string;
  bytes: number;
  elapsedMs: number;
  /** Providers skipped because they did not answer in time, with why. */
  skipped: { nodeId: string; why: string }[];
}

export interface DownloadOptions {
  connectTimeoutMs?: number;
  onProgress?: (p: DownloadProgress) => void;
  /** Tag that keeps the blob from garbage collection. */
  tag?: string;
  /** Transfers by result, bytes and duration go here. */
  metrics?: P2PMetrics;
}

export class NoProviderError extends Error {
  constructor(
    readonly hash: string,
    readonly skipped: { nodeId: string; why: string }[],
  ) {
    super(`no provider could serve ${hash}: ${skipped.map((s) => `${s.nodeId.slice(0, 10)} (${s.why})`).join('; ') || 'none given'}`);
    this.name = 'NoProviderError';
  }
}

export async function downloadBlob(iroh: Iroh, hash: string, providers: NodeAddr[], opts: DownloadOptions = {}): Promise<DownloadResult> {
  const started = performance.now();
  try {
    const r = await download(iroh, hash, providers, opts);
    opts.metrics?.transfers.inc({ result: 'ok' });
    opts.metrics?.transferSeconds.observe((performance.now() - started) / 1000);
    return r;
  } catch (e) {
    opts.metrics?.transfers.inc({ result: 'failed' });
    throw e;
  }
}

async function download(iroh: Iroh, hash: string, providers: NodeAddr[], opts: DownloadOptions): Promise<DownloadResult> {
  const m = await import('@number0/iroh');
  const irohHash = m.Hash.fromString(hash.replace(/^blake3:/, '')).toString();
  const skipped: { nodeId: string; why: string }[] = [];
  const endpoint = iroh.node.endpoint();
  for (const provider of providers) {
    const started = performance.now();
    try {
      const probe = await connectWithTimeout(endpoint, provider, BLOBS_ALPN, opts.connectTimeoutMs ?? 3000, `connect to ${provider.nodeId.slice(0, 10)}`);
      probe.close(0n, Buffer.from('probe'));
    } catch (e) {
      skipped.push({ nodeId: provider.nodeId, why: (e as Error).message });
      continue;
    }
    let total: number | null = null;
    let bytes = 0;
    let done: { bytesWritten: bigint; bytesRead: bigint } | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        const tag = opts.tag ? m.SetTagOption.named([...Buffer.from(opts.tag)]) : m.SetTagOption.auto();
        iroh.blobs
          .download(irohHash, new m.BlobDownloadOptions(m.BlobFormat.Raw, [provider], tag), (err, p) => {
            if (err) return reject(err);
            if (p.found) total = Number(p.found.size);
            if (p.foundLocal) total = Number(p.foundLocal.size);
            if (p.progress) {
              bytes = Number(p.progress.offset);
              opts.onProgress?.({ provider: provider.nodeId, bytes, total });
            }
            if (p.allDone) {
              done = p.allDone;
              resolve();
            }
          })
          // Iroh awaits every progress callback before this settles: a stream that ended without
          // saying so is over too (the status check below tells whether the blob is whole).
          .then(() => resolve(), reject);
      });
    } catch (e) {
      skipped.push({ nodeId: provider.nodeId, why: (e as Error).message.split('\n')[0] ?? 'download failed' });
      continue;
    }
    if (done) {
      // iroh-blobs' stats are the network's: bytes read is what came in (content and its BAO
      // verification data; 0 when the store had it all), bytes written the request that went out.
      opts.metrics?.transferBytes.inc(Number(done.bytesRead));
      opts.metrics?.bytes.inc({ protocol: BLOBS_ALPN, direction: 'received' }, Number(done.bytesRead));
      opts.metrics?.bytes.inc({ protocol: BLOBS_ALPN, direction: 'sent' }, Number(done.bytesWritten));
    }
    const st = await iroh.blobs.status(irohHash);
    if (st.type !== 'Complete') {
      skipped.push({ nodeId: provider.nodeId, why: `download ended with the blob ${st.type}` });
      continue;
    }
    return { hash, provider: provider.nodeId, bytes: Number(st.size), elapsedMs: performance.now() - started, skipped };
  }
  throw new NoProviderError(hash, skipped);
}

/** Puts a file into the blob store and returns its hash and a ticket naming this node as provider. */
export async function shareFile(iroh: Iroh, file: string): Promise<{ hash: string; ticket: string }> {
  const m = await import('@number0/iroh');
  const irohHash = await new Promise<string>((resolve, reject) => {
    iroh.blobs
      .addFromPath(file, false, m.SetTagOption.auto(), { wrap: false }, (err, p) => {
        if (err) reject(err);
        else if (p.allDone) resolve(p.allDone.hash);
      })
      .catch(reject);
  });
  const ticket = await iroh.blobs.share(irohHash, m.BlobFormat.Raw, m.AddrInfoOptions.Addresses);
  return { hash: `blake3:${m.Hash.fromString(irohHash).toString('hex')}`, ticket: ticket.toString() };
}
