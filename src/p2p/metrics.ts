import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

// P2P metrics (issue 4), registered on the node's registry and served at /metrics.

export class P2PMetrics {
  readonly peersConnected: Gauge;
  readonly peerRtt: Gauge<'peer'>;
  readonly bytes: Counter<'protocol' | 'direction'>;
  readonly connections: Counter<'protocol' | 'result'>;
  readonly docEntries: Gauge<'doc'>;
  readonly docSyncLatency: Histogram<'doc'>;
  readonly docUntrusted: Counter<'doc'>;
  readonly docContentRefetched: Counter<'doc'>;
  readonly docSyncs: Counter<'doc' | 'result'>;
  readonly docWrites: Counter<'doc'>;
  readonly docWriteBytes: Counter<'doc'>;
  readonly transfers: Counter<'result'>;
  readonly transferBytes: Counter;
  readonly transferSeconds: Histogram;
  readonly errors: Counter<'component'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.peersConnected = new Gauge({ name: 'blixard_p2p_peers_connected', help: 'Admitted peers with a live connection', registers });
    this.peerRtt = new Gauge({ name: 'blixard_p2p_peer_rtt_seconds', help: 'Last measured round-trip time to a peer', labelNames: ['peer'], registers });
    this.bytes = new Counter({ name: 'blixard_p2p_bytes_total', help: 'Bytes sent and received on Blixard protocols', labelNames: ['protocol', 'direction'], registers });
    this.connections = new Counter({ name: 'blixard_p2p_connections_total', help: 'Incoming connections on Blixard protocols, by outcome', labelNames: ['protocol', 'result'], registers });
    this.docEntries = new Gauge({ name: 'blixard_p2p_doc_entries', help: 'Entries in a replicated document view', labelNames: ['doc'], registers });
    this.docSyncLatency = new Histogram({
      name: 'blixard_p2p_doc_sync_latency_seconds',
      help: "From an entry's write (writer's clock) to this node seeing it",
      labelNames: ['doc'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.docUntrusted = new Counter({
      name: 'blixard_p2p_doc_untrusted_entries_total',
      help: 'Document entries ignored because their author does not own the key (e.g. a node writing under another node\'s status prefix)',
      labelNames: ['doc'],
      registers,
    });
    this.docContentRefetched = new Counter({
      name: 'blixard_p2p_doc_content_refetched_total',
      help: "Document entries whose content Iroh did not fetch with the entry, fetched later by anti-entropy",
      labelNames: ['doc'],
      registers,
    });
    this.docSyncs = new Counter({ name: 'blixard_p2p_doc_syncs_total', help: 'Set reconciliations of a document with a peer, by outcome', labelNames: ['doc', 'result'], registers });
    // Each write costs ~0.4-0.9 ms of CPU in Iroh on the writer alone (measured, 50 B-3 KB values):
    // the first thing to look at when a node is busy.
    this.docWrites = new Counter({ name: 'blixard_p2p_doc_writes_total', help: 'Entries this node wrote into a document', labelNames: ['doc'], registers });
    this.docWriteBytes = new Counter({ name: 'blixard_p2p_doc_write_bytes_total', help: 'Bytes of the values this node wrote into a document', labelNames: ['doc'], registers });
    this.transfers = new Counter({ name: 'blixard_p2p_transfers_total', help: 'Blob downloads, by outcome', labelNames: ['result'], registers });
    this.transferBytes = new Counter({ name: 'blixard_p2p_transfer_bytes_total', help: 'Bytes received by blob downloads (content and its BLAKE3 verification data)', registers });
    this.transferSeconds = new Histogram({ name: 'blixard_p2p_transfer_seconds', help: 'Duration of blob downloads', buckets: [0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300], registers });
    this.errors = new Counter({ name: 'blixard_background_errors_total', help: 'Errors in background tasks, by component', labelNames: ['component'], registers });
  }
}
