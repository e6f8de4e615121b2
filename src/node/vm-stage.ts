import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Directory } from '../cluster/index.js';
import { NodeImages, type ImageMetrics, type ImageStore } from '../images/index.js';
import { NodeReconciler, type LaunchedVm, type NodeReconcilerDeps } from '../reconciler/index.js';
import { parseBytes, parseRate, type DesiredStateStore } from '../state/index.js';
import { writeFileAtomic } from '../storage/index.js';
import type { Documents } from '../sync/index.js';
import type { Driver } from '../vm/index.js';
import type { NodeSettings } from './settings.js';

// The parts that run VMs here: the node's images (holdings, prefetch from every node that has
// pieces, the cache) and the reconciler (the per-node loop over the drivers).

export interface VmStageOptions {
  self: string;
  dataDir: string;
  settings: NodeSettings;
  store: DesiredStateStore;
  images: ImageStore;
  imageMetrics: ImageMetrics;
  docs: Documents;
  directory: Directory;
  drivers: Driver[];
  /** What the reconciler is told and tells (the gate, its reports, its events). */
  gate: NodeReconcilerDeps['gate'];
  report: NodeReconcilerDeps['report'];
  event: NodeReconcilerDeps['event'];
  onError: (err: unknown) => void;
  log: Logger;
}

export interface VmStage {
  images: NodeImages;
  reconciler: NodeReconciler;
  /** --prefetch all: every image of the cluster, in the background, behind what VMs wait for. */
  warmCache(): void;
}

export function buildVmStage(o: VmStageOptions): VmStage {
  const { self, settings, store, log } = o;
  const hashesOf = (imageNames: string[]) =>
    imageNames.flatMap((n) => {
      const img = store.get('Image', n);
      return [img?.source?.hash, img?.source?.initrdHash].filter((h): h is string => !!h);
    });
  const images: NodeImages = new NodeImages({
    self,
    store: o.images,
    status: () => o.docs.current?.statusView,
    addressOf: (id) => o.directory.addrOf(id),
    bytesPerSec: settings.maxTransferRate ? parseRate(settings.maxTransferRate) : null,
    cacheBytes: settings.imageCacheSize ? parseBytes(settings.imageCacheSize) : null,
    // The images of every VM placed on this node or still on its drivers.
    inUse: () => hashesOf(store.list('VirtualMachine').filter((v) => store.placement(v.metadata.name)?.nodeId === self || reconciler.report(v.metadata.name)).map((v) => (v.spec as { image: string }).image)),
    metrics: o.imageMetrics,
    onError: o.onError,
    log,
  });
  const { prefetcher, cache } = images;
  const reconciler: NodeReconciler = new NodeReconciler({
    nodeId: self,
    nodeName: settings.name,
    view: () => store,
    drivers: o.drivers,
    images: {
      ...prefetcher.access(),
      pull: async (hashes, vm, onProgress) => {
        await prefetcher.pull(hashes, vm, onProgress);
        cache.kick();
      },
    },
    ledger: launchLedger(path.join(o.dataDir, 'vms', 'launched.json')),
    gate: o.gate,
    report: o.report,
    event: o.event,
    log,
  });
  const warmCache = () => {
    if (settings.prefetch === 'all' && o.docs.current) prefetcher.warm(hashesOf(store.list('Image').map((i) => i.metadata.name)));
  };
  return { images, reconciler, warmCache };
}

/** What this node launched, kept across daemon restarts (durable: fsync of the file and folder). */
function launchLedger(file: string): NodeReconcilerDeps['ledger'] {
  return {
    load: async () => JSON.parse(await readFile(file, 'utf8').catch(() => '{}')) as Record<string, LaunchedVm>,
    save: async (all) => {
      await mkdir(path.dirname(file), { recursive: true });
      await writeFileAtomic(file, JSON.stringify(all, null, 1), { mode: 0o600, sync: 'all' });
    },
  };
}
