import type { Counter, Gauge, Histogram, Registry } from 'prom-client';

// Image metrics (issue 6), registered on the node's registry and served at /metrics: bytes per
// peer, transfer durations, cache size, hits and misses, and what the watchdog did. prom-client
// is loaded on creation (ImageMetrics.create), not when the CLI imports this folder.

export class ImageMetrics {
  readonly bytesFromPeer: Counter<'peer'>;
  readonly pieces: Counter<'peer'>;
  readonly pulls: Counter<'result' | 'priority'>;
  readonly pullSeconds: Histogram<'priority'>;
  readonly verifySeconds: Histogram;
  readonly verifyFailures: Counter;
  readonly stalls: Counter<'peer'>;
  readonly hedges: Counter<'kind'>;
  readonly cacheBytes: Gauge<'kind'>;
  readonly cacheImages: Gauge;
  readonly cacheLookups: Counter<'result'>;
  readonly evictions: Counter<'what'>;
  readonly imports: Counter<'result'>;
  readonly importSeconds: Histogram;
  readonly inFlight: Gauge;

  static async create(registry: Registry): Promise<ImageMetrics> {
    return new ImageMetrics(registry, await import('prom-client'));
  }

  private constructor(registry: Registry, pc: typeof import('prom-client')) {
    const { Counter, Gauge, Histogram } = pc;
    const registers = [registry];
    const durations = [0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900];
    this.bytesFromPeer = new Counter({ name: 'blixard_image_bytes_received_total', help: 'Image bytes received, by the peer that sent them (network bytes, as counted here)', labelNames: ['peer'], registers });
    this.pieces = new Counter({ name: 'blixard_image_pieces_received_total', help: 'Image pieces received, by peer', labelNames: ['peer'], registers });
    this.pulls = new Counter({ name: 'blixard_image_pulls_total', help: 'Image downloads, by outcome and priority', labelNames: ['result', 'priority'], registers });
    this.pullSeconds = new Histogram({ name: 'blixard_image_pull_seconds', help: 'Duration of image downloads (pieces and the whole-file check)', labelNames: ['priority'], buckets: durations, registers });
    this.verifySeconds = new Histogram({ name: 'blixard_image_verify_tail_seconds', help: 'Whole-file check time left after the last piece arrived', buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10], registers });
    this.verifyFailures = new Counter({ name: 'blixard_image_verify_failures_total', help: 'Images refused because their pieces did not make the announced whole-file BLAKE3', registers });
    this.stalls = new Counter({ name: 'blixard_image_piece_stalls_total', help: 'Piece downloads that made no progress within the watchdog time, by peer', labelNames: ['peer'], registers });
    this.hedges = new Counter({ name: 'blixard_image_piece_hedges_total', help: 'Pieces started again from another peer (hedge: after a stall; endgame: a slow last piece)', labelNames: ['kind'], registers });
    this.cacheBytes = new Gauge({ name: 'blixard_image_cache_bytes', help: 'Bytes of images on this node (pieces in the blob store; files written out for hypervisors)', labelNames: ['kind'], registers });
    this.cacheImages = new Gauge({ name: 'blixard_image_cache_images', help: 'Images held whole on this node', registers });
    this.cacheLookups = new Counter({ name: 'blixard_image_cache_lookups_total', help: 'Images VMs needed here: hit (already here) or miss (fetched from peers)', labelNames: ['result'], registers });
    this.evictions = new Counter({ name: 'blixard_image_evictions_total', help: 'Cache removals: whole images, or only the file written out for hypervisors', labelNames: ['what'], registers });
    this.imports = new Counter({ name: 'blixard_image_imports_total', help: 'Uploads and local files imported as images, by outcome', labelNames: ['result'], registers });
    this.importSeconds = new Histogram({ name: 'blixard_image_import_seconds', help: 'Duration of image imports (hashing, splitting, storing pieces)', buckets: durations, registers });
    this.inFlight = new Gauge({ name: 'blixard_image_transfers_in_flight', help: 'Image downloads under way', registers });
  }
}
