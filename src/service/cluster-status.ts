import type { DriftJson, NodeJson, StatusJson } from '../api/index.js';
import type { TransferStatus } from '../images/index.js';
import type { ClusterLog } from '../raft/index.js';
import { VERSION } from '../version.js';
import type { BackgroundErrors } from './events.js';
import { imageDrift, nodeName, nodesJson, vmDrift, vmStatus, type StatusFacts } from './status-model.js';

// `blixard status`, `get nodes` and `diff --actual` as this node sees them (SPEC section 5): from
// its own replica, so that status answers even when the leader does not.

export interface ClusterStatusOptions {
  facts: StatusFacts;
  log: ClusterLog;
  name: string;
  /** Known once the API listens (port 0 means the OS chose it). */
  apiUrl: () => string;
  transfers: () => TransferStatus[];
  heldHere: (hash: string) => Promise<boolean>;
  errors: BackgroundErrors;
}

export class ClusterStatus {
  constructor(private readonly o: ClusterStatusOptions) {}

  /** Caught up with the cluster: a leader is known and this node applied the bootstrap. */
  ready(): boolean {
    return this.o.log.leader !== null && this.o.facts.store.clusterId !== null;
  }

  nodes(): NodeJson[] {
    return nodesJson(this.o.facts);
  }

  /**
   * Where what is observed differs from what is stored (SPEC section 1, step 8): VMs not in their
   * desired state or behind their generation, and images not yet on a node that needs them.
   */
  async drift(): Promise<DriftJson[]> {
    const f = this.o.facts;
    const vms = f.store.list('VirtualMachine').flatMap((r) => vmDrift(r, vmStatus(f, r)) ?? []);
    return [...vms, ...(await imageDrift(f, (h) => this.o.heldHere(h).catch(() => false)))];
  }

  async status(): Promise<StatusJson> {
    const { facts: f, log } = this.o;
    const { store } = f;
    const vms = store.list('VirtualMachine');
    const notes: string[] = [];
    if (store.clusterId === null) {
      notes.push(`not part of a cluster yet: restart with --bootstrap or --join TICKET, or apply a Peer for node id ${f.self} on a cluster`);
    } else if (!log.leader) notes.push('no leader is known: the cluster cannot take writes now');
    const conf = log.membership;
    const member = (nodeId: string, role: 'voter' | 'learner') => ({ nodeId, name: nodeName(f, nodeId), role, api: nodeId === f.self ? this.o.apiUrl() : (store.node(nodeId)?.api ?? null) });
    return {
      nodeId: f.self,
      name: this.o.name,
      clusterId: store.clusterId,
      version: VERSION,
      raft: {
        role: log.currentRole === 'precandidate' ? 'candidate' : log.currentRole,
        term: log.term,
        leader: log.leader,
        commitIndex: log.commitIndex,
        appliedIndex: log.appliedIndex,
        members: [...conf.voters.map((id) => member(id, 'voter')), ...conf.learners.map((id) => member(id, 'learner'))],
      },
      nodes: this.nodes(),
      vms: { total: vms.length, running: vms.filter((v) => vmStatus(f, v).phase === 'Running').length },
      images: { total: store.list('Image').length },
      peers: f.peerHealth(),
      transfers: this.o.transfers().map((t) => ({ hash: t.hash, vms: t.vms, priority: t.priority, phase: t.phase, bytes: t.bytes, total: t.total, pieces: t.pieces, piecesTotal: t.piecesTotal, fromPeers: t.perProvider, startedAt: t.startedAt })),
      drift: (await this.drift()).length,
      applysets: store.listApplysets().map((a) => ({ name: a.name, index: a.index, time: a.time, ...(a.revision ? { revision: a.revision } : {}) })),
      errors: this.o.errors.list(),
      notes,
    };
  }
}
