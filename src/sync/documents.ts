import type { Iroh } from '@number0/iroh';
import type { P2PMetrics } from '../p2p/index.js';
import type { ClusterDocs } from '../state/index.js';
import { NodeDocs } from './node-docs.js';

// A node's documents as one part: opened once this node knows their tickets (a voter from its
// store, a worker from its membership), and closed when the node stops. A failed open is tried
// again by the next caller; whoever needs the documents waits on `ready` or reads `current`.

export interface DocumentsOptions {
  iroh: Iroh;
  self: string;
  authorOf: (nodeId: string) => string | undefined;
  /** Whom to sync with at once when opening (a document opened from disk does not by itself). */
  peers: () => { nodeId: string; addresses: string[] }[];
  metrics?: P2PMetrics;
  onError: (doc: 'cluster' | 'status', err: unknown) => void;
  log: { info(o: object, msg?: string): void };
}

export class Documents {
  private docs: NodeDocs | undefined;
  private opening: Promise<NodeDocs> | undefined;
  private closed = false;
  private readonly clusterListeners: ((keys: string[]) => void)[] = [];
  private readonly statusListeners: ((keys: string[]) => void)[] = [];
  private readonly openListeners: ((docs: NodeDocs) => void)[] = [];
  private loaded: () => void = () => {};
  /** Resolves once the documents are open and loaded. */
  readonly ready = new Promise<void>((r) => (this.loaded = r));

  constructor(private readonly o: DocumentsOptions) {}

  /** Keys of the cluster document that changed (parts built after this one subscribe). */
  onClusterChange(fn: (keys: string[]) => void): void {
    this.clusterListeners.push(fn);
  }

  onStatusChange(fn: (keys: string[]) => void): void {
    this.statusListeners.push(fn);
  }

  /** Called once, when the documents are open (before `ready` resolves). */
  onOpen(fn: (docs: NodeDocs) => void): void {
    this.openListeners.push(fn);
  }

  get current(): NodeDocs | undefined {
    return this.docs;
  }

  open(tickets: ClusterDocs, canPublish: boolean): Promise<NodeDocs> {
    const o = this.o;
    return (this.opening ??= NodeDocs.open({
      iroh: o.iroh,
      self: o.self,
      docs: tickets,
      canPublish,
      authorOf: o.authorOf,
      onClusterChange: (keys) => {
        for (const fn of this.clusterListeners) fn(keys);
      },
      onStatusChange: (keys) => {
        for (const fn of this.statusListeners) fn(keys);
      },
      peers: o.peers(),
      ...(o.metrics ? { metrics: o.metrics } : {}),
      onError: o.onError,
    }).then(
      async (d) => {
        if (this.closed) {
          await d.close();
          throw new Error('the node stopped while its documents opened');
        }
        this.docs = d;
        for (const fn of this.openListeners) fn(d);
        this.loaded();
        o.log.info({ cluster: tickets.clusterId.slice(0, 10), status: tickets.statusId.slice(0, 10) }, 'documents open');
        return d;
      },
      (e: unknown) => {
        this.opening = undefined;
        throw e;
      },
    ));
  }

  async close(): Promise<void> {
    this.closed = true;
    const d = this.docs;
    this.docs = undefined;
    await d?.close();
  }
}
