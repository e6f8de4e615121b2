import { Coalescer } from '../lifecycle/index.js';
import type { DesiredStateStore, PlacementRecord } from '../state/index.js';
import { DocDesiredView } from './cluster-layout.js';
import type { NodeDocs } from './node-docs.js';

// A worker's store is a mirror of the cluster document, rebuilt (coalesced) as the document
// changes; what follows a commit on a voter follows a rebuild here.

export class WorkerMirror {
  private readonly run: Coalescer;

  constructor(o: { store: DesiredStateStore; docs: () => NodeDocs | undefined; loaded: () => void }) {
    this.run = new Coalescer(() => {
      const docs = o.docs();
      if (!docs) return;
      const view = new DocDesiredView(docs.clusterView);
      o.store.load(
        { version: 1, clusterId: view.clusterId, resources: view.list(), nodes: view.listNodes(), applysets: [], appliedPlans: [], joinSecrets: [], placements: docs.clusterView.list<PlacementRecord>('placement/').map((e) => e.value), docs: null },
        docs.clusterView.rev,
      );
      o.loaded();
    }, 20);
  }

  /** The cluster document changed (or opened): rebuild soon. */
  kick(): void {
    this.run.kick();
  }

  cancel(): void {
    this.run.cancel();
  }
}
