import { every, type Runnable } from '../lifecycle/index.js';
import type { NodeDocs } from './node-docs.js';

// Documents sync live by gossip, which carries no guarantee while the swarm changes. So every node
// asks every node it knows for a sync now and then (Iroh's range-based set reconciliation: cheap
// when nothing differs), at once with a peer whose connection came back, and fetches by hand the
// entries whose content Iroh did not fetch with them (its one try, from the peer that sent the
// entry, failed): otherwise a view keeps the older value indefinitely.

/** How often every node asks every node it knows for a sync. */
export const DOC_RESYNC_MS = 10_000;
/**
 * Content missing this long is fetched by hand (Iroh's own try normally lands in milliseconds; when
 * it fails, a VM's newest status stayed unseen for 2-3 s with 2 s here). Checked this often; a
 * check with nothing missing costs a scan of an empty map.
 */
export const CONTENT_REPAIR_AFTER_MS = 500;
export const CONTENT_REPAIR_EVERY_MS = 250;

type Addr = { nodeId: string; addresses: string[] };

export interface AntiEntropyOptions {
  docs: () => NodeDocs | undefined;
  /** The known nodes that have addresses. */
  peers: () => Addr[];
  /** Errors that are news only while they last (a peer down): logged at debug, counted. */
  onSyncError: (err: unknown) => void;
  onRepairError: (err: unknown) => void;
  onRepaired: (entries: number) => void;
}

export class AntiEntropy {
  private repairing = false;

  constructor(private readonly o: AntiEntropyOptions) {}

  /** Syncs with these peers now (a session that came back: either side restarted, or a partition healed). */
  syncWith(peers: Addr[]): void {
    const docs = this.o.docs();
    if (docs) void docs.syncWith(peers).catch(this.o.onSyncError);
  }

  /** The periodic sync with every known node. */
  resync(): Runnable {
    return every('document-resync', DOC_RESYNC_MS, () => this.syncWith(this.o.peers()));
  }

  /** The content repair, one pass at a time. */
  repair(): Runnable {
    return every('document-content-repair', CONTENT_REPAIR_EVERY_MS, () => {
      const docs = this.o.docs();
      if (!docs || this.repairing) return;
      this.repairing = true;
      void docs
        .repair(this.o.peers(), CONTENT_REPAIR_AFTER_MS)
        .then((n) => n > 0 && this.o.onRepaired(n))
        .catch(this.o.onRepairError)
        .finally(() => (this.repairing = false));
    });
  }
}
