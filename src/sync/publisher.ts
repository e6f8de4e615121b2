import type { ClusterLog } from '../raft/index.js';
import type { DesiredStateStore } from '../state/index.js';
import { clusterDocChanges, clusterDocEntries } from './cluster-layout.js';
import type { NodeDocs } from './node-docs.js';

// The leader publishes the committed state into the cluster document (coalesced, in order).
// After one full pass, only what the store says changed since is written: a pass over 20,000
// resources on every commit was a third of the leader's time under load. A new leadership or a
// failed pass starts again with a full one.

export interface PublisherOptions {
  self: string;
  store: DesiredStateStore;
  log: ClusterLog;
  docs: () => NodeDocs | undefined;
  /** The node is stopping: nothing new is written into documents that are closing. */
  stopping: () => boolean;
  onError: (err: unknown) => void;
}

export class ClusterPublisher {
  private chain: Promise<void> = Promise.resolve();
  private publishedRev = -1;
  private whole = true;

  constructor(private readonly o: PublisherOptions) {}

  /** This node became the leader: other leaders may have written the document since it last did. */
  leading(): void {
    this.whole = true;
    this.o.docs()?.publisher?.reset();
  }

  /** Publishes what was applied since the last pass (a no-op off the leader). */
  publish(): Promise<void> {
    const { store, log } = this.o;
    this.chain = this.chain
      .then(async () => {
        const docs = this.o.docs();
        if (this.o.stopping() || !docs?.publisher || !log.isLeader || this.publishedRev === log.appliedIndex) return;
        const rev = log.appliedIndex;
        const changes = store.takeChanges();
        try {
          if (changes === 'all' || this.whole || !docs.publisher.ready) {
            this.whole = false;
            const entries = clusterDocEntries(store);
            entries.set('meta/cluster', { clusterId: store.clusterId, leader: this.o.self });
            await docs.publisher.publish(entries, rev);
          } else {
            await docs.publisher.update(clusterDocChanges(store, changes), rev);
          }
        } catch (e) {
          this.whole = true;
          throw e;
        }
        this.publishedRev = rev;
      })
      .catch(this.o.onError);
    return this.chain;
  }
}
