import type { NodeAddr } from '@number0/iroh';
import { ImageCache } from './cache-gc.js';
import type { EngineConfig } from './download.js';
import { HoldingsPublisher, type StatusReader, type StatusWriterLike } from './holdings.js';
import { TransferLimiter } from './limiter.js';
import type { ImageMetrics } from './metrics.js';
import { Prefetcher } from './prefetch.js';
import type { ImageStore } from './store.js';

// A node's image machinery as one part, as the daemon and the multi-process test nodes both build
// it: what this node holds goes into the status document (holdings), images placed VMs need come
// from every node that has pieces of them (prefetcher, under the transfer limit), and the cache
// drops what no VM here needs.

export interface NodeImagesOptions {
  self: string;
  store: ImageStore;
  /** The status document's view (trusted authors only); undefined until the documents open. */
  status: () => StatusReader | undefined;
  addressOf: (nodeId: string) => NodeAddr | undefined;
  /** --max-transfer-rate in bytes per second; null: unlimited. */
  bytesPerSec: number | null;
  /** --image-cache-size in bytes; null: no limit. */
  cacheBytes: number | null;
  /** The images (and initrds) of every VM placed on this node or still running here. */
  inUse: () => Iterable<string>;
  engine?: Partial<EngineConfig>;
  findTimeoutMs?: number;
  metrics?: ImageMetrics;
  onError: (err: unknown) => void;
  log: { info(o: object, m?: string): void; warn(o: object, m?: string): void; debug?(o: object, m?: string): void };
}

export class NodeImages {
  readonly holdings: HoldingsPublisher;
  readonly limiter: TransferLimiter;
  readonly prefetcher: Prefetcher;
  readonly cache: ImageCache;

  constructor(private readonly o: NodeImagesOptions) {
    this.holdings = new HoldingsPublisher({ onError: o.onError });
    this.limiter = new TransferLimiter({ bytesPerSec: o.bytesPerSec, burstBytes: o.store.pieceSize });
    this.prefetcher = new Prefetcher({
      self: o.self,
      store: o.store,
      status: o.status,
      publisher: this.holdings,
      addressOf: o.addressOf,
      limiter: this.limiter,
      ...(o.engine ? { engine: o.engine } : {}),
      ...(o.findTimeoutMs ? { findTimeoutMs: o.findTimeoutMs } : {}),
      ...(o.metrics ? { metrics: o.metrics } : {}),
      log: o.log,
    });
    this.cache = new ImageCache({ store: o.store, limitBytes: o.cacheBytes, inUse: o.inUse, fetching: (h) => this.prefetcher.fetching(h), ...(o.metrics ? { metrics: o.metrics } : {}), log: o.log });
  }

  /** The status document is open: this node's holdings are written there from now on. */
  attach(writer: StatusWriterLike): Promise<void> {
    this.holdings.attach(writer);
    return this.prefetcher.publishHoldings().catch(this.o.onError);
  }

  /** Ends downloads and the cache's passes; holdings are no longer written. */
  async stop(): Promise<void> {
    this.cache.stop();
    await this.prefetcher.stop();
    this.holdings.stop();
  }
}
