import type { Logger } from 'pino';
import { Fence, type Directory, type Gate } from '../cluster/index.js';
import { every, Signal, type Runnable } from '../lifecycle/index.js';
import type { ClusterLog } from '../raft/index.js';
import type { DesiredStateStore } from '../state/index.js';
import type { Documents } from '../sync/index.js';

// The fence rules of cluster/fencing.ts fed from this node's log and documents, and acted on:
// confirmation rounds started, the reconciler told when the gate changes.

export interface NodeFencingOptions {
  fence: Fence;
  role: 'voter' | 'worker';
  log: ClusterLog;
  store: DesiredStateStore;
  docs: Documents;
  directory: Directory;
  nodeTimeoutMs: number;
  onError: (err: unknown) => void;
  logger: Pick<Logger, 'warn' | 'info'>;
}

export class NodeFencing {
  /** The gate changed: the reconciler looks at every VM again. */
  readonly changed = new Signal();

  constructor(private readonly o: NodeFencingOptions) {}

  /** What the reconciler may do now (reconciler/node-reconciler.ts `gate`). */
  gate(): Gate {
    const { log, store, docs, role } = this.o;
    const g = this.o.fence.check({
      inCluster: store.clusterId !== null,
      lastContact: log.lastClusterContact,
      leaderKnown: log.leader !== null,
      syncedAt: docs.current?.clusterView.lastSyncAt ?? 0,
      canConfirm: role === 'voter' || docs.current !== undefined,
    });
    if (g.confirm) this.confirm(g.at);
    return { fenced: g.fenced, mayStart: g.mayStart, ...(g.why ? { why: g.why } : {}) };
  }

  /** The gate is a matter of time: looked at again twice a second. */
  watch(): Runnable {
    return every('fence-watch', 500, () => this.tick());
  }

  /** Looks at the gate; a change is logged and told to the reconciler. */
  tick(): void {
    const g = this.gate();
    const c = this.o.fence.changed(g);
    if (!c.changed) return;
    if (g.fenced) this.o.logger.warn({ why: g.why }, 'fenced: cut off from the cluster; stopping local VMs');
    else if (c.backInTouch) this.o.logger.info('in touch with the cluster again');
    this.changed.emit();
  }

  private confirm(asked: number): void {
    const { fence, log, docs } = this.o;
    if (this.o.role === 'voter') {
      log.readBarrier(Math.min(2000, this.o.nodeTimeoutMs)).then(
        () => fence.confirmed(asked),
        () => fence.confirmFailed(),
      );
    } else {
      docs.current?.syncWith(this.o.directory.voters()).catch(this.o.onError);
    }
  }
}
