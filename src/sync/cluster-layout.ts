import type { ClusterDocView } from './cluster-doc.js';
import type { DesiredStateStore, DesiredView, Kind, NodeRecord, PlacementRecord, StoreChanges, StoredResource } from '../state/index.js';

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

/**
 * The entries of clusterDocEntries that `changes` may have changed, each with its value now or
 * undefined when it is gone: what a leader publishes after a commit, without walking the store.
 */
export function clusterDocChanges(store: DesiredStateStore, changes: StoreChanges): Map<string, unknown> {
  const m = new Map<string, unknown>();
  const placements = new Set(changes.placements);
  for (const key of changes.resources) {
    const slash = key.indexOf('/');
    const kind = key.slice(0, slash) as Kind;
    const name = key.slice(slash + 1);
    m.set(`desired/${key}`, store.get(kind, name));
    // A placement is published only while it belongs to its VM (uid): a new VM of the same name
    // hides the old one's.
    if (kind === 'VirtualMachine') placements.add(name);
  }
  for (const vm of placements) m.set(`placement/${vm}`, store.placement(vm));
  for (const id of changes.nodes) m.set(`node/${id}`, store.node(id));
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
