import type { ClusterDocView } from '../p2p/index.js';
import type { DesiredStateStore, DesiredView, Kind, NodeRecord, PlacementRecord, StoredResource } from '../state/index.js';

// The cluster document's layout, both ways: what the leader publishes from its store, and the
// DesiredView a worker reads back from it.
//   desired/<Kind>/<name>  the stored resource
//   placement/<vm>         where the scheduler put it (or why not)
//   node/<nodeId>          the node record (capacity, formats, labels, document author)
//   meta/cluster           the cluster id

export function clusterDocEntries(store: DesiredStateStore): Map<string, unknown> {
  const m = new Map<string, unknown>();
  m.set('meta/cluster', { clusterId: store.clusterId });
  for (const r of store.list()) m.set(`desired/${r.kind}/${r.metadata.name}`, r);
  for (const p of store.listPlacements()) m.set(`placement/${p.vm}`, p);
  for (const n of store.listNodes()) m.set(`node/${n.nodeId}`, n);
  return m;
}

export class DocDesiredView implements DesiredView {
  constructor(private readonly doc: ClusterDocView) {}

  get(kind: Kind, name: string): StoredResource | undefined {
    return this.doc.get<StoredResource>(`desired/${kind}/${name}`);
  }

  list(kind?: Kind): StoredResource[] {
    return this.doc.list<StoredResource>(kind ? `desired/${kind}/` : 'desired/').map((e) => e.value);
  }

  placement(vm: string): PlacementRecord | undefined {
    const p = this.doc.get<PlacementRecord>(`placement/${vm}`);
    // As the store does: a placement belongs to the VM it was made for.
    return p && p.uid === this.get('VirtualMachine', vm)?.metadata.uid ? p : undefined;
  }

  listNodes(): NodeRecord[] {
    return this.doc.list<NodeRecord>('node/').map((e) => e.value);
  }

  get clusterId(): string | null {
    return this.doc.get<{ clusterId: string | null }>('meta/cluster')?.clusterId ?? null;
  }
}
