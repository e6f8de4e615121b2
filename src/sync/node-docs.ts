import type { Iroh, NodeAddr } from '@number0/iroh';
import { ReplicatedDoc, type P2PMetrics } from '../p2p/index.js';
import { ClusterDocPublisher, ClusterDocView } from './cluster-doc.js';
import { follow } from './follow.js';
import { nodeOfKey, StatusView, StatusWriter } from './status-doc.js';
import type { ClusterDocs } from '../state/index.js';

// A node's two documents (SPEC section 1, steps 6-7): the cluster document (the leader publishes
// desired state and placements; voters may write it, workers only read it) and the status
// document (every node writes its own observations under its author). Opened from the node's own
// store after a restart, joined from a ticket the first time.

export interface NodeDocsOptions {
  iroh: Iroh;
  self: string;
  docs: ClusterDocs;
  /** Voters get the cluster document's write ticket; workers its read ticket. */
  canPublish: boolean;
  authorOf: (nodeId: string) => string | undefined;
  onClusterChange?: (keys: string[]) => void;
  onStatusChange?: (keys: string[]) => void;
  /** Nodes to sync with at once: a document opened from disk is not synced by Iroh by itself,
   * so a restarted node would otherwise not hear of what it missed. */
  peers?: NodeAddr[];
  metrics?: P2PMetrics;
  /** Errors on the documents' event streams and view refreshes (never swallowed). */
  onError?: (doc: 'cluster' | 'status', err: unknown) => void;
}

export class NodeDocs {
  private constructor(
    readonly cluster: ReplicatedDoc,
    readonly status: ReplicatedDoc,
    readonly clusterView: ClusterDocView,
    readonly statusView: StatusView,
    readonly writer: StatusWriter,
    readonly publisher: ClusterDocPublisher | null,
  ) {}

  /** Creates both documents for a new cluster; returns their tickets (with secrets). */
  static async create(iroh: Iroh): Promise<ClusterDocs> {
    const cluster = await ReplicatedDoc.create(iroh);
    const status = await ReplicatedDoc.create(iroh);
    return {
      clusterId: cluster.id,
      statusId: status.id,
      clusterWrite: await cluster.ticket('Write'),
      clusterRead: await cluster.ticket('Read'),
      statusWrite: await status.ticket('Write'),
    };
  }

  static async open(o: NodeDocsOptions): Promise<NodeDocs> {
    const opts = (name: 'cluster' | 'status') => ({
      name,
      ...(o.metrics ? { metrics: o.metrics } : {}),
      ...(o.onError ? { onError: (e: unknown) => o.onError!(name, e) } : {}),
      ...(o.peers ? { peers: o.peers.filter((p) => p.nodeId !== o.self) } : {}),
    });
    const { doc: cluster, view: clusterView } = await follow(
      (onEvent) => ReplicatedDoc.openOrJoin(o.iroh, o.docs.clusterId, o.canPublish ? o.docs.clusterWrite : o.docs.clusterRead, onEvent, opts('cluster')),
      (d) => new ClusterDocView(d, o.onClusterChange, opts('cluster')),
    );
    const { doc: status, view: statusView } = await follow(
      (onEvent) => ReplicatedDoc.openOrJoin(o.iroh, o.docs.statusId, o.docs.statusWrite, onEvent, opts('status')),
      (d) => new StatusView(d, o.authorOf, o.onStatusChange, opts('status')),
    );
    await Promise.all([clusterView.load(), statusView.load()]);
    // The writer continues this node's map where an earlier run of it left off.
    const writer = new StatusWriter(status, o.self);
    const own = statusView.mapOf(o.self);
    writer.seed(own.entries, own.seq);
    return new NodeDocs(cluster, status, clusterView, statusView, writer, o.canPublish ? new ClusterDocPublisher(cluster) : null);
  }

  /** Syncs with these peers now (after a restart, or when a member's address changed). */
  async syncWith(peers: NodeAddr[]): Promise<void> {
    if (peers.length === 0) return;
    await Promise.all([this.cluster.startSync(peers), this.status.startSync(peers)]);
  }

  /**
   * Fetches entry content Iroh left missing for `ms` or more: a status entry from the node it is
   * about first, then from the others; a cluster entry from any peer. Views read what came.
   */
  async repair(peers: NodeAddr[], ms = 5_000): Promise<number> {
    if (peers.length === 0) return 0;
    const ownerFirst = (key: string) => {
      const owner = nodeOfKey(key);
      return [...peers.filter((p) => p.nodeId === owner), ...peers.filter((p) => p.nodeId !== owner)];
    };
    const [c, s] = await Promise.all([this.cluster.fetchMissing(() => peers, ms), this.status.fetchMissing(ownerFirst, ms)]);
    if (c.length > 0) await this.clusterView.load();
    if (s.length > 0) await this.statusView.load();
    return c.length + s.length;
  }

  async close(): Promise<void> {
    this.writer.close();
    await Promise.all([this.cluster.close().catch(() => {}), this.status.close().catch(() => {})]);
  }
}
