import type { Readable } from 'node:stream';
import { ApiError, type ApiBackend, type ApplyRequest, type CordonRequest, type ApplyResponse, type BlobJson, type DeleteRequest, type DeleteResponse, type DriftJson, type EventJson, type NodeJson, type PeerHealthJson, type PlanRequest, type ResourceJson, type StatusJson, type TicketRequest, type VersionJson, type WatchEvent } from '../api/index.js';
import { HashMismatchError, type TransferStatus } from '../images/index.js';
import type { ClusterLog } from '../raft/index.js';
import type { Finding, Plan } from '../manifest/index.js';
import type { ReportedVm } from '../reconciler/index.js';
import { API_VERSION, type Command, type CommandOutcome, type DesiredStateStore, type Kind, type NodeRecord } from '../state/index.js';
import type { ConsoleLogOptions } from '../vm/index.js';
import { VERSION } from '../version.js';
import { Admission } from './admission.js';
import { callOf, type Call, type JoinResponse, type NodeRequest } from './calls.js';
import { ClusterStatus } from './cluster-status.js';
import type { Changes } from './changes.js';
import type { BackgroundErrors, Events } from './events.js';
import type { ServiceBugs } from './bugs.js';
import { Leader } from './leader.js';
import { parseSelectorOrThrow, Resources } from './resources.js';
import type { StatusFacts } from './status-model.js';

// What the API calls on this node (the HTTP API, and other nodes over blixard/api/1): one facade
// over the parts, each call either served here or passed on to the leader by `Leader.run`.

export interface NodeServiceOptions {
  bugs?: ServiceBugs;
  self: string;
  name: string;
  store: DesiredStateStore;
  log: ClusterLog;
  /** A node on its own: it gives out no tickets and admits no Peer. */
  p2pOff: boolean;
  /** Whom to ask when no leader is known (a worker asks any voter). */
  fallbackLeader: () => string | null;
  /** Sends a call to another node over blixard/api/1. */
  send: (nodeId: string, call: Call) => Promise<{ status: number; body: unknown }>;
  /** When a node last answered this node's ping (see LeaderOptions.heardAt). */
  heardAt?: (nodeId: string) => number | undefined;
  /** Admitted on Blixard's protocols (anyone else may only present a join secret). */
  admitted: (nodeId: string) => boolean;
  /** The node's image content: an upload is verified against its hash, then stored. */
  blobs: { has(hash: string): Promise<boolean>; importStream(expected: string, body: Readable): Promise<{ hash: string; size: number }> };
  /** Image downloads under way on this node. */
  transfers: () => TransferStatus[];
  /** The Iroh addresses peers can reach this node on (for tickets). */
  addresses: () => Promise<string[]>;
  /** Known once the API listens. */
  apiUrl: () => string;
  /** What this node's reconciler reports of the VMs placed here, and their consoles. */
  vms: { report(name: string): ReportedVm | undefined; consoleLog(name: string, opts: ConsoleLogOptions): Promise<Buffer> };
  nodeReady: (nodeId: string) => boolean;
  /** What another node reports of a VM placed on it (the status document). */
  remoteVm: (nodeId: string, vm: string) => ReportedVm | undefined;
  peerHealth: () => PeerHealthJson[];
  /** The nodes that hold a blob whole (the status document). */
  holders: (hash: string) => string[];
  /** Adds a joined voter to the Raft configuration (as a learner; promotion follows). */
  addLearner: (nodeId: string) => Promise<void>;
  /** Shared with the node's parts: they record events and errors, and say what changed. */
  events: Events;
  errors: BackgroundErrors;
  changes: Changes;
}

export class NodeService implements ApiBackend {
  readonly leader: Leader;
  private readonly resources: Resources;
  private readonly admission: Admission;
  private readonly clusterStatus: ClusterStatus;

  constructor(private readonly o: NodeServiceOptions) {
    const { self, store, log } = o;
    this.leader = new Leader({ self, log, store, fallback: o.fallbackLeader, send: o.send, ...(o.heardAt ? { heardAt: o.heardAt } : {}), ...(o.bugs ? { bugs: o.bugs } : {}) });
    const facts: StatusFacts = {
      self,
      store,
      nodeReady: o.nodeReady,
      reported: (nodeId, vm) => (nodeId === self ? o.vms.report(vm) : o.remoteVm(nodeId, vm)),
      holders: o.holders,
      peerHealth: o.peerHealth,
    };
    const heldHere = (h: string) => o.blobs.has(h);
    this.resources = new Resources({ store, leader: this.leader, events: o.events, changes: o.changes, facts, heldHere, p2pOff: o.p2pOff });
    this.admission = new Admission({ self, store, log, leader: this.leader, addresses: o.addresses, addLearner: o.addLearner });
    this.clusterStatus = new ClusterStatus({ facts, log, name: o.name, apiUrl: o.apiUrl, transfers: o.transfers, heldHere, errors: o.errors });
  }

  get isLeader(): boolean {
    return this.leader.isLeader;
  }

  /** Commits a command from this node's own parts (the scheduler, leader duties). */
  propose(cmd: Command): Promise<CommandOutcome> {
    return this.leader.propose(cmd);
  }

  // --- the API ---

  version(): VersionJson {
    return { version: VERSION, apiVersion: API_VERSION, nodeId: this.o.self };
  }

  ready(): boolean {
    return this.clusterStatus.ready();
  }

  status(): Promise<StatusJson> {
    return this.clusterStatus.status();
  }

  nodes(): NodeJson[] {
    return this.clusterStatus.nodes();
  }

  /** From the leader; `local` (and a node not yet in a cluster) reads this node's replica. */
  async drift(local = false): Promise<DriftJson[]> {
    if (local || this.o.store.clusterId === null) return this.clusterStatus.drift();
    return this.leader.run({ op: 'drift' }, () => this.clusterStatus.drift());
  }

  // Reads go to the leader and are linearizable; `?local=1` reads this node's replica as it is
  // (etcd's serializable read).
  async list(kind: Kind, local = false, selector = ''): Promise<ResourceJson[]> {
    // Parsed before anything else: a bad selector is the caller's error wherever it is read.
    parseSelectorOrThrow(selector);
    if (local || this.o.bugs?.localReads) return this.resources.list(kind, selector, false);
    return this.leader.run({ op: 'list', kind, selector }, () => this.resources.list(kind, selector, true));
  }

  async get(kind: Kind, name: string, local = false): Promise<ResourceJson | undefined> {
    if (local || this.o.bugs?.localReads) return this.resources.get(kind, name, false);
    // Over the wire, a missing resource is null.
    return (await this.leader.run({ op: 'get', kind, name }, () => this.resources.get(kind, name, true))) ?? undefined;
  }

  events(kind: Kind, name: string): EventJson[] {
    return this.o.events.list(kind, name);
  }

  watch(kind: Kind, selector: string, emit: (e: WatchEvent) => void, signal: AbortSignal): Promise<void> {
    return this.resources.watch(kind, selector, emit, signal);
  }

  validate(body: unknown): Promise<{ results: Finding[][] }> {
    return this.resources.validate(body);
  }

  plan(req: PlanRequest): Promise<Plan> {
    return this.leader.run({ op: 'plan', req }, () => this.resources.plan(req));
  }

  apply(req: ApplyRequest): Promise<ApplyResponse> {
    return this.leader.run({ op: 'apply', req }, () => this.resources.apply(req));
  }

  delete(req: DeleteRequest): Promise<DeleteResponse> {
    return this.leader.run({ op: 'delete', req }, () => this.resources.delete(req));
  }

  async ticket(req: TicketRequest): Promise<{ ticket: string }> {
    if (this.o.p2pOff) throw new ApiError('invalid', 'this node runs with --p2p off: no other node can join it (restart it with --p2p on)');
    return this.leader.run({ op: 'ticket', req }, () => this.admission.ticket(req));
  }

  cordon(node: string, req: CordonRequest): Promise<{ nodeId: string; evicting: number }> {
    return this.leader.run({ op: 'cordon', node, req }, () => this.admission.cordon(node, req));
  }

  /** This node's own record, kept current on the leader. */
  register(rec: NodeRecord): Promise<{ ok: true }> {
    return this.leader.run({ op: 'register', node: rec }, () => this.admission.register(rec, this.o.self));
  }

  async hasBlob(hash: string): Promise<boolean> {
    return this.o.blobs.has(hash);
  }

  async putBlob(hash: string, body: Readable): Promise<BlobJson> {
    try {
      const r = await this.o.blobs.importStream(hash, body);
      return { hash: r.hash, size: r.size };
    } catch (e) {
      if (e instanceof HashMismatchError) throw new ApiError('invalid', e.message);
      throw e;
    }
  }

  /** A VM's console, from the node it runs on (this one, or the caller is told which). */
  async logs(vm: string, opts: { tailBytes?: number; follow?: AbortSignal; onData?: (chunk: Buffer) => void }): Promise<Buffer> {
    const { store } = this.o;
    // Asked of the leader first, as `get` is: a VM deleted there is not found here either.
    if (!this.isLeader && store.clusterId !== null && !(await this.get('VirtualMachine', vm))) throw new ApiError('not-found', `VirtualMachine/${vm} not found`);
    const r = store.get('VirtualMachine', vm);
    if (!r) throw new ApiError('not-found', `VirtualMachine/${vm} not found`);
    const p = store.placement(vm);
    if (!p?.nodeId) throw new ApiError('not-found', `VirtualMachine/${vm} is not placed on any node yet`);
    if (p.nodeId !== this.o.self) throw new ApiError('not-found', `VirtualMachine/${vm} runs on ${store.node(p.nodeId)?.name ?? p.nodeId.slice(0, 10)}; ask that node (--server ${store.node(p.nodeId)?.api ?? '?'})`);
    try {
      return await this.o.vms.consoleLog(vm, opts);
    } catch (e) {
      throw new ApiError('not-found', (e as Error).message);
    }
  }

  // --- node to node ---

  /**
   * A call from another node over blixard/api/1 (`remote` is its authenticated node id): served
   * here, or passed on to the leader. Only an admitted node is served; anyone may present a join
   * secret.
   */
  async serveNode(req: NodeRequest, remote: string): Promise<{ status: number; body: unknown }> {
    const call = callOf(req);
    if (!this.o.admitted(remote) && call?.op !== 'join') return fail(new ApiError('unauthorized', 'not admitted to this cluster'));
    if (!call) return fail(new ApiError('not-found', `no node-to-node call ${req.method} ${req.path}`));
    try {
      return { status: 200, body: (await this.serveCall(call, remote)) ?? null };
    } catch (e) {
      return fail(e instanceof ApiError ? e : new ApiError('internal', (e as Error).message));
    }
  }

  private serveCall(call: Call, remote: string): Promise<unknown> {
    switch (call.op) {
      case 'list':
        return this.list(call.kind, false, call.selector);
      case 'get':
        return this.get(call.kind, call.name);
      case 'drift':
        return this.drift();
      case 'plan':
        return this.plan(call.req);
      case 'apply':
        return this.apply(call.req);
      case 'delete':
        return this.delete(call.req);
      case 'ticket':
        return this.ticket(call.req);
      case 'cordon':
        return this.cordon(call.node, call.req);
      case 'join':
        return this.leader.run<JoinResponse>(call, () => this.admission.join(call.req, remote));
      case 'register':
        return this.leader.run(call, () => this.admission.register(call.node, remote));
    }
  }
}

function fail(e: ApiError): { status: number; body: unknown } {
  return { status: e.status, body: e.toJSON() };
}
