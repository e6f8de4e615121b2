import { createHash, randomBytes } from 'node:crypto';
import { ApiError, type CordonRequest, type TicketRequest } from '../api/index.js';
import { encodeTicket } from '../cluster/index.js';
import type { ClusterLog } from '../raft/index.js';
import type { DesiredStateStore, NodeRecord } from '../state/index.js';
import type { JoinRequest, JoinResponse } from './calls.js';
import { requestIdOf, type Leader } from './leader.js';

// Who belongs to the cluster, decided on the leader: join tickets, a node presenting one, a node
// keeping its own record current, and cordoning (no new VMs on a node; drain moves them away).

export interface AdmissionOptions {
  self: string;
  store: DesiredStateStore;
  log: ClusterLog;
  leader: Leader;
  /** The Iroh addresses peers can reach this node on (for tickets). */
  addresses: () => Promise<string[]>;
  /** Adds a joined voter to the Raft configuration (as a learner; promotion follows). */
  addLearner: (nodeId: string) => Promise<void>;
}

export class Admission {
  constructor(private readonly o: AdmissionOptions) {}

  async ticket(req: TicketRequest): Promise<{ ticket: string }> {
    const role = req.role === 'voter' ? 'voter' : 'worker';
    const ttl = Number.isFinite(req.ttlSeconds) && req.ttlSeconds > 0 ? req.ttlSeconds : 86_400;
    const secret = randomBytes(32).toString('base64url');
    const now = new Date();
    const expiresAt = new Date(now.getTime() + ttl * 1000).toISOString();
    await this.o.leader.propose({ op: 'addJoinSecret', time: now.toISOString(), secretHash: sha256(secret), role, expiresAt });
    return { ticket: encodeTicket({ v: 1, cluster: this.o.store.clusterId!, role, secret, expiresAt, leader: { nodeId: this.o.self, addresses: await this.o.addresses() } }) };
  }

  /**
   * A node presents a join secret (over blixard/api/1, so `remote` is its authenticated node id):
   * the leader commits its admission, adds a voter to the Raft configuration as a learner, and
   * answers with what the node needs to take part.
   */
  async join(req: JoinRequest, remote: string): Promise<JoinResponse> {
    const { store } = this.o;
    if (req.node?.nodeId !== remote) throw new ApiError('unauthorized', 'a node may only join as itself');
    const out = await this.o.leader.propose({ op: 'admitNode', time: new Date().toISOString(), node: req.node, secretHash: sha256(String(req.secret)) });
    if (!out.ok) throw new ApiError('unauthorized', out.message);
    const role = store.node(remote)!.role;
    if (role === 'voter') await this.o.addLearner(remote);
    const conf = this.o.log.membership;
    const members = [...new Set([...conf.voters, ...conf.learners])].map((id) => ({ nodeId: id, addresses: store.node(id)?.addresses ?? [] }));
    // A worker may read the cluster document and write its status; only voters may publish.
    const docs = store.docs && role === 'worker' ? { ...store.docs, clusterWrite: '' } : store.docs;
    return { clusterId: store.clusterId!, role, docs, members };
  }

  /** A node's own record (capacity, formats, addresses, author), sent by that node. */
  async register(rec: NodeRecord, remote: string): Promise<{ ok: true }> {
    const { store } = this.o;
    if (rec?.nodeId !== remote) throw new ApiError('unauthorized', 'a node may only register itself');
    if (!store.admitted(remote)) throw new ApiError('unauthorized', 'not admitted to this cluster');
    const prev = store.node(remote);
    // The role is the cluster's decision (Peer manifest or join secret), never the node's.
    await this.o.leader.propose({ op: 'registerNode', time: new Date().toISOString(), node: { ...rec, role: prev?.role ?? rec.role, registeredAt: prev?.registeredAt ?? rec.registeredAt } });
    return { ok: true };
  }

  async cordon(node: string, req: CordonRequest): Promise<{ nodeId: string; evicting: number }> {
    const { store } = this.o;
    const n = store.listNodes().find((x) => x.name === node || x.nodeId === node);
    if (!n) throw new ApiError('not-found', `node ${node} not found (see blixard get nodes)`);
    await this.o.leader.propose({ op: 'cordon', time: new Date().toISOString(), nodeId: n.nodeId, cordoned: !!req.cordoned, ...(req.drain ? { drain: true } : {}), ...requestIdOf(req) });
    const evicting = store.listPlacements().filter((p) => p.nodeId === n.nodeId && p.evicting).length;
    return { nodeId: n.nodeId, evicting };
  }
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}
