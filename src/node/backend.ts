import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { ApiError, kindPlural, type ApiBackend } from '../api/index.js';
import type {
  Condition,
  ApplyRequest,
  ApplyResponse,
  BlobJson,
  DeleteRequest,
  DeleteResponse,
  DriftJson,
  EventJson,
  ImageStatus,
  PeerHealthJson,
  NodeJson,
  PeerStatus,
  PlanRequest,
  ResourceJson,
  StatusJson,
  TicketRequest,
  VersionJson,
  VmStatus,
  WatchEvent,
} from '../api/index.js';
import { HashMismatchError, type TransferStatus } from '../images/index.js';
import type { ReportedVm } from '../reconciler/index.js';
import type { ConsoleLogOptions } from '../vm/index.js';
import { ACTION_WORD, buildPlan, checkDesired, checkDocuments, planChanges, schemaDocsFrom, type Finding, type Plan } from '../manifest/index.js';
import {
  API_VERSION,
  encodeCommand,
  matchesSelector,
  parseSelector,
  SelectorError,
  type Selector,
  resourceKey,
  type ApplyOutcome,
  type Command,
  type CommandOutcome,
  type DeleteOutcome,
  type DesiredStateStore,
  type Kind,
  type NodeRecord,
  type StoredResource,
  type ClusterDocs,
  type VmSpec,
  withDefaults,
} from '../state/index.js';
import { Coalescer } from './coalescer.js';
import { encodeTicket } from './ticket.js';
import type { NodeSettings } from './settings.js';
import { VERSION } from '../version.js';

// What the API does on this node: reads from the desired-state store, writes through the log.
// Until Raft lands the log is a single-node one, so this node is the leader once bootstrapped.


export interface ConsensusLog {
  propose(data: Uint8Array): Promise<{ index: number; result: unknown }>;
  readonly term: number;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly isLeader: boolean;
  readonly leader: string | null;
  readonly currentRole: 'leader' | 'follower' | 'candidate' | 'precandidate' | 'learner' | 'none';
  readonly membership: { voters: string[]; learners: string[] };
  /** ReadIndex: resolves once this node's state reflects every write committed before the call. */
  readBarrier?(timeoutMs?: number): Promise<void>;
}

/** A node-to-node call to the leader (or the leader's answer as an ApiError). */
export type Forward = (method: string, path: string, body?: unknown) => Promise<unknown>;

export interface JoinRequest {
  secret: string;
  node: NodeRecord;
}

export interface JoinResponse {
  clusterId: string;
  role: 'voter' | 'worker';
  docs: ClusterDocs | null;
  members: { nodeId: string; addresses: string[] }[];
}

export interface BackendDeps {
  nodeId: string;
  settings: NodeSettings;
  store: DesiredStateStore;
  log: ConsensusLog;
  /** The node's image content: an upload is verified against its hash, then stored. */
  blobs: { has(hash: string): Promise<boolean>; importStream(expected: string, body: Readable): Promise<{ hash: string; size: number }> };
  /** Image downloads under way on this node. */
  transfers?: () => TransferStatus[];
  /** The Iroh addresses peers can reach this node on (for tickets). */
  addresses: () => Promise<string[]>;
  /** Known once the API listens (port 0 means the OS chose it). */
  apiUrl: () => string;
  /** What this node's reconciler reports of the VMs placed here. */
  vms?: { report(name: string): ReportedVm | undefined; consoleLog(name: string, opts: ConsoleLogOptions): Promise<Buffer> };
  /** Sends a request to the leader when this node is not it. */
  forward: Forward;
  /** Whether a node is up (this one, or a peer answering pings / heartbeating). */
  nodeReady: (nodeId: string) => boolean;
  /** What another node reports of a VM placed on it (the status document). */
  remoteVm?: (nodeId: string, vm: string) => ReportedVm | undefined;
  /** This node's connections to its peers. */
  peerHealth?: () => PeerHealthJson[];
  /** The nodes that hold a blob whole (status document), and a hook when this node gets one. */
  holders?: (hash: string) => string[];
  /** Adds a joined voter to the Raft configuration (as a learner; promotion follows). */
  addLearner?: (nodeId: string) => Promise<void>;
}

const EVENTS_PER_RESOURCE = 20;
const READ_BARRIER_TIMEOUT_MS = 5_000;
const PROPOSE_TIMEOUT_MS = 15_000;
const ERRORS_KEPT = 50;

export class NodeBackend implements ApiBackend {
  private readonly recent = new Map<string, EventJson[]>();
  private readonly errors: StatusJson['errors'] = [];
  constructor(private readonly d: BackendDeps) {}

  get isLeader(): boolean {
    return this.d.log.isLeader && this.d.store.clusterId !== null;
  }

  recordError(component: string, err: unknown): void {
    this.errors.push({ time: new Date().toISOString(), component, message: (err as Error)?.message ?? String(err) });
    while (this.errors.length > ERRORS_KEPT) this.errors.shift();
  }

  version(): VersionJson {
    return { version: VERSION, apiVersion: API_VERSION, nodeId: this.d.nodeId };
  }

  /** Caught up with the cluster: a leader is known and this node applied the bootstrap. */
  ready(): boolean {
    return this.d.log.leader !== null && this.d.store.clusterId !== null;
  }

  async status(): Promise<StatusJson> {
    const { store, log, settings } = this.d;
    const vms = store.list('VirtualMachine');
    const notes: string[] = [];
    if (store.clusterId === null) {
      notes.push(`not part of a cluster yet: restart with --bootstrap or --join TICKET, or apply a Peer for node id ${this.d.nodeId} on a cluster`);
    } else if (!log.leader) notes.push('no leader is known: the cluster cannot take writes now');
    const conf = log.membership;
    const member = (nodeId: string, role: 'voter' | 'learner') => ({ nodeId, name: this.nodeName(nodeId), role, api: nodeId === this.d.nodeId ? this.d.apiUrl() : (store.node(nodeId)?.api ?? null) });
    const statuses = await Promise.all(vms.map((v) => this.statusOf(v)));
    return {
      nodeId: this.d.nodeId,
      name: settings.name,
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
      vms: { total: vms.length, running: statuses.filter((st) => (st as VmStatus).phase === 'Running').length },
      images: { total: store.list('Image').length },
      peers: this.d.peerHealth?.() ?? [],
      transfers: (this.d.transfers?.() ?? []).map((t) => ({ hash: t.hash, vms: t.vms, priority: t.priority, phase: t.phase, bytes: t.bytes, total: t.total, pieces: t.pieces, piecesTotal: t.piecesTotal, fromPeers: t.perProvider, startedAt: t.startedAt })),
      // From this node's own replica: status must answer even when the leader does not.
      drift: (await this.drift(true)).length,
      applysets: store.listApplysets().map((a) => ({ name: a.name, index: a.index, time: a.time, ...(a.revision ? { revision: a.revision } : {}) })),
      errors: [...this.errors],
      notes,
    };
  }

  /**
   * Where what is observed differs from what is stored (SPEC section 1, step 8): VMs not in
   * their desired state or behind their generation, and images not yet on a node that needs them.
   */
  async drift(local = false): Promise<DriftJson[]> {
    if (!local && !this.isLeader && this.d.store.clusterId !== null) return ((await this.d.forward('GET', '/v1/drift')) as { items: DriftJson[] }).items;
    const out: DriftJson[] = [];
    for (const r of this.d.store.list('VirtualMachine')) {
      const st = (await this.statusOf(r)) as VmStatus;
      const want = (r.spec as VmSpec).state ?? 'Running';
      const behind = st.observedGeneration !== r.metadata.generation;
      if (st.phase === want && !behind) continue;
      const why = [st.phase !== want ? `desired ${want}, observed ${st.phase}` : '', behind ? `observed generation ${st.observedGeneration} of ${r.metadata.generation}` : ''].filter(Boolean).join('; ');
      out.push({ kind: 'VirtualMachine', name: r.metadata.name, nodeId: st.nodeId, why, message: st.message });
    }
    for (const p of this.d.store.listPlacements()) {
      if (!p.nodeId) continue;
      const vm = this.d.store.get('VirtualMachine', p.vm)!;
      const image = this.d.store.get('Image', (vm.spec as VmSpec).image);
      const hash = image?.source?.hash;
      if (!image || !hash) continue;
      const held = p.nodeId === this.d.nodeId ? await this.d.blobs.has(hash).catch(() => false) : (this.d.holders?.(hash) ?? []).includes(p.nodeId);
      if (!held) out.push({ kind: 'Image', name: image.metadata.name, nodeId: p.nodeId, why: `not yet on ${this.nodeName(p.nodeId)}, which runs VirtualMachine/${p.vm}`, message: '' });
    }
    return out;
  }

  nodes(): NodeJson[] {
    const allocated = new Map<string, { vcpus: number; memoryMiB: number }>();
    for (const p of this.d.store.listPlacements()) {
      if (!p.nodeId) continue;
      const spec = withDefaults('VirtualMachine', this.d.store.get('VirtualMachine', p.vm)!.spec) as VmSpec;
      const a = allocated.get(p.nodeId) ?? { vcpus: 0, memoryMiB: 0 };
      a.vcpus += spec.vcpus!;
      a.memoryMiB += spec.memoryMiB!;
      allocated.set(p.nodeId, a);
    }
    return this.d.store.listNodes().map((n) => nodeJson(n, this.d.nodeReady(n.nodeId), allocated.get(n.nodeId) ?? { vcpus: 0, memoryMiB: 0 }));
  }

  private nodeName(nodeId: string): string {
    return this.d.store.node(nodeId)?.name ?? nodeId.slice(0, 10);
  }

  // Reads go to the leader too: SPEC section 1, step 8 (get, describe, diff read from the leader),
  // and are linearizable, as etcd's are by default: the leader first confirms with a quorum that
  // it still leads (ReadIndex), so a leader cut off from the others never answers from a stale
  // state. `?local=1` reads this node's replica as it is (etcd's serializable read).
  async list(kind: Kind, local = false, selector = ''): Promise<ResourceJson[]> {
    // Parsed before anything else: a bad selector is the caller's error wherever it is read.
    const sel = parseSelectorOrThrow(selector);
    if (!this.isLeader && !local) {
      const query = selector ? `?labelSelector=${encodeURIComponent(selector)}` : '';
      return ((await this.d.forward('GET', `/v1/resources/${kindPlural(kind)}${query}`)) as { items: ResourceJson[] }).items;
    }
    if (!local) await this.linearizable();
    // Filtered before any status is built: a selector is how a caller watches a few of many.
    return Promise.all(this.d.store.list(kind).filter((r) => matchesSelector(r.metadata.labels, sel)).map((r) => this.toJson(r)));
  }

  async get(kind: Kind, name: string, local = false): Promise<ResourceJson | undefined> {
    if (!this.isLeader && !local) return (await this.d.forward('GET', `/v1/resources/${kindPlural(kind)}/${encodeURIComponent(name)}`)) as ResourceJson;
    if (!local) await this.linearizable();
    const r = this.d.store.get(kind, name);
    return r ? this.toJson(r) : undefined;
  }

  /** Watches: each is told which resources may have changed (names, or null for any). */
  private readonly watchers = new Set<(names: Iterable<string> | null) => void>();

  /**
   * Resources whose status (or anything else) may have changed: the VMs a report or a status
   * entry named, or null for any (a commit, time passing). Costs nothing without watchers.
   */
  changed(names: Iterable<string> | null): void {
    for (const w of this.watchers) w(names);
  }

  async watch(kind: Kind, selector: string, emit: (e: WatchEvent) => void, signal: AbortSignal): Promise<void> {
    const sel = parseSelectorOrThrow(selector);
    const sent = new Map<string, string>(); // name -> JSON of the form last sent
    let all = true;
    let dirty = new Set<string>();
    // Only what changed is looked at again (and sent): a watch of 100 VMs costs a status per
    // change, where polling a list built and sent all 100 each time.
    const look = async (): Promise<void> => {
      const names = all ? null : dirty;
      all = false;
      dirty = new Set();
      const present = new Set<string>();
      const rs = names === null ? this.d.store.list(kind) : [...names].flatMap((n) => this.d.store.get(kind, n) ?? []);
      for (const r of rs) {
        if (!matchesSelector(r.metadata.labels, sel)) continue;
        present.add(r.metadata.name);
        const obj = await this.toJson(r);
        const json = JSON.stringify(obj);
        const prev = sent.get(r.metadata.name);
        if (prev === json) continue;
        sent.set(r.metadata.name, json);
        emit({ type: prev === undefined ? 'ADDED' : 'MODIFIED', object: obj });
      }
      for (const name of names ?? [...sent.keys()]) {
        const last = sent.get(name);
        if (last === undefined || present.has(name)) continue;
        sent.delete(name);
        emit({ type: 'DELETED', object: JSON.parse(last) as ResourceJson });
      }
    };
    if (signal.aborted) return;
    await look();
    emit({ type: 'SYNCED' });
    let chain = Promise.resolve();
    const pass = new Coalescer(() => {
      chain = chain.then(look).catch(() => {});
    }, 20);
    const listener = (names: Iterable<string> | null) => {
      if (names === null) all = true;
      else for (const n of names) dirty.add(n);
      pass.kick();
    };
    this.watchers.add(listener);
    // Readiness changes with time, not with entries (a node's heartbeat going stale).
    const tick = setInterval(() => listener(null), 1000);
    try {
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    } finally {
      clearInterval(tick);
      pass.cancel();
      this.watchers.delete(listener);
      await chain;
    }
  }

  events(kind: Kind, name: string): EventJson[] {
    return this.recent.get(resourceKey(kind, name)) ?? [];
  }

  async validate(body: unknown): Promise<{ results: Finding[][] }> {
    const docs = schemaDocsFrom(body);
    if (typeof docs === 'string') throw new ApiError('invalid', docs);
    return { results: await checkDocuments(docs) };
  }

  async plan(req: PlanRequest): Promise<Plan> {
    if (!this.isLeader) return (await this.d.forward('POST', '/v1/plan', req)) as Plan;
    this.requireLeader();
    const problems = await checkDesired(req.desired);
    const { store } = this.d;
    const inSet = new Set(req.desired.filter((d) => d.kind === 'Image').map((d) => d.name));
    for (const d of req.desired) {
      if (d.kind !== 'VirtualMachine') continue;
      const image = (d.spec as { image: string }).image;
      if (!inSet.has(image) && !store.get('Image', image)) problems.push(`VirtualMachine/${d.name} spec.image: expected the name of an Image in this set or in the cluster, got "${image}"`);
    }
    if (problems.length > 0) throw new ApiError('invalid', problems.join('\n'), { problems });
    const applyset = req.applyset || 'default';
    return buildPlan({
      desired: req.desired,
      get: (k, n) => store.get(k, n),
      inventory: req.prune ? store.inventory(applyset) : [],
      applyset,
      prune: !!req.prune,
      id: randomUUID(),
      clusterId: store.clusterId,
      createdAt: new Date().toISOString(),
    });
  }

  async apply(req: ApplyRequest): Promise<ApplyResponse> {
    if (!this.isLeader) return (await this.d.forward('POST', '/v1/apply', req)) as ApplyResponse;
    this.requireLeader();
    if (this.d.settings.p2p === 'off') {
      // A Peer would be a voter or a worker this node can never reach (and a voter, a lost quorum).
      const peer = ('plan' in req && req.plan ? req.plan.changes.filter((c) => c.action !== 'prune') : 'desired' in req ? req.desired : []).find((d) => d.kind === 'Peer');
      if (peer) throw new ApiError('invalid', `Peer/${peer.name}: this node runs with --p2p off and admits no other node (restart it with --p2p on)`);
    }
    let plan: Plan;
    if (req.plan) {
      plan = req.plan;
      if (plan.kind !== 'Plan' || !Array.isArray(plan.changes) || typeof plan.id !== 'string') throw new ApiError('invalid', 'expected a saved plan (from `blixard diff --out FILE`)');
      if (plan.clusterId !== this.d.store.clusterId) throw new ApiError('invalid', `the plan was made for cluster ${plan.clusterId}, this is cluster ${this.d.store.clusterId}`);
      const problems = await checkDesired(plan.changes.filter((c) => c.desired).map((c) => ({ kind: c.kind, name: c.name, labels: c.desired!.labels, spec: c.desired!.spec })));
      if (problems.length > 0) throw new ApiError('invalid', problems.join('\n'), { problems });
    } else {
      plan = await this.plan(req);
    }
    const prunes = plan.changes.filter((c) => c.action === 'prune').map((c) => `${c.kind}/${c.name}`);
    if (prunes.length > req.maxPrune) {
      throw new ApiError('invalid', `--prune would delete ${prunes.length} resources, more than --max-prune ${req.maxPrune}: ${prunes.join(', ')}`, { prune: prunes });
    }
    if (req.dryRun) {
      return { planId: plan.id, dryRun: true, index: null, results: plan.changes.map((c) => ({ kind: c.kind, name: c.name, action: ACTION_WORD[c.action] })) };
    }
    const revision = typeof req.revision === 'string' && req.revision.length <= 100 ? { revision: req.revision } : {};
    const out = (await this.propose({ op: 'apply', time: new Date().toISOString(), planId: plan.id, applyset: plan.applyset, changes: planChanges(plan), ...revision })) as ApplyOutcome;
    if (!out.ok) throw new ApiError(out.code === 'conflict' ? 'conflict' : 'invalid', out.message, out.code === 'conflict' ? { conflicts: out.conflicts } : undefined);
    const changes = new Map(plan.changes.map((c) => [`${c.kind}/${c.name}`, c]));
    for (const r of out.results) {
      if (r.action === 'unchanged') continue;
      const change = changes.get(`${r.kind}/${r.name}`);
      const what = change?.action === 'configure' ? ` (${change.effect}: ${change.fields.map((f) => f.field).join(', ')})` : '';
      const gen = this.d.store.get(r.kind, r.name)?.metadata.generation;
      this.event(r.kind, r.name, 'Normal', r.action === 'pruned' ? 'Pruned' : r.action === 'created' ? 'Created' : 'Configured', `${r.action} at index ${out.index}${gen ? `, generation ${gen}` : ''}${what}`);
    }
    return { planId: plan.id, dryRun: false, index: out.index, results: out.results };
  }

  async delete(req: DeleteRequest): Promise<DeleteResponse> {
    if (!this.isLeader) return (await this.d.forward('POST', '/v1/delete', req)) as DeleteResponse;
    this.requireLeader();
    const out = (await this.propose({ op: 'delete', time: new Date().toISOString(), targets: req.targets })) as DeleteOutcome;
    if (!out.ok) throw new ApiError('invalid', out.message);
    for (const r of out.results) if (r.action === 'deleted') this.event(r.kind, r.name, 'Normal', 'Deleted', `deleted at index ${out.index}`);
    return { index: out.index, results: out.results };
  }

  async hasBlob(hash: string): Promise<boolean> {
    return this.d.blobs.has(hash);
  }

  async putBlob(hash: string, body: Readable): Promise<BlobJson> {
    try {
      const r = await this.d.blobs.importStream(hash, body);
      return { hash: r.hash, size: r.size };
    } catch (e) {
      if (e instanceof HashMismatchError) throw new ApiError('invalid', e.message);
      throw e;
    }
  }

  async ticket(req: TicketRequest): Promise<{ ticket: string }> {
    if (this.d.settings.p2p === 'off') throw new ApiError('invalid', 'this node runs with --p2p off: no other node can join it (restart it with --p2p on)');
    if (!this.isLeader) return (await this.d.forward('POST', '/v1/tickets', req)) as { ticket: string };
    this.requireLeader();
    const role = req.role === 'voter' ? 'voter' : 'worker';
    const ttl = Number.isFinite(req.ttlSeconds) && req.ttlSeconds > 0 ? req.ttlSeconds : 86_400;
    const secret = randomBytes(32).toString('base64url');
    const now = new Date();
    const expiresAt = new Date(now.getTime() + ttl * 1000).toISOString();
    await this.propose({ op: 'addJoinSecret', time: now.toISOString(), secretHash: createHash('sha256').update(secret).digest('hex'), role, expiresAt });
    const ticket = encodeTicket({ v: 1, cluster: this.d.store.clusterId!, role, secret, expiresAt, leader: { nodeId: this.d.nodeId, addresses: await this.d.addresses() } });
    return { ticket };
  }

  /**
   * A node presents a join secret (over blixard/api/1, so `remote` is its authenticated node id):
   * the leader commits its admission, adds a voter to the Raft configuration as a learner, and
   * answers with what the node needs to take part.
   */
  async join(body: unknown, remote: string): Promise<JoinResponse> {
    const req = body as JoinRequest;
    if (!this.isLeader) return (await this.d.forward('POST', '/v1/join', req)) as JoinResponse;
    if (req.node?.nodeId !== remote) throw new ApiError('unauthorized', 'a node may only join as itself');
    const secretHash = createHash('sha256').update(String(req.secret)).digest('hex');
    const out = await this.propose({ op: 'admitNode', time: new Date().toISOString(), node: req.node, secretHash });
    if (!out.ok) throw new ApiError('unauthorized', out.message);
    const role = this.d.store.node(remote)!.role;
    if (role === 'voter') await this.d.addLearner?.(remote);
    const conf = this.d.log.membership;
    const members = [...new Set([...conf.voters, ...conf.learners])].map((id) => ({ nodeId: id, addresses: this.d.store.node(id)?.addresses ?? [] }));
    // A worker may read the cluster document and write its status; only voters may publish.
    const docs = this.d.store.docs && role === 'worker' ? { ...this.d.store.docs, clusterWrite: '' } : this.d.store.docs;
    return { clusterId: this.d.store.clusterId!, role, docs, members };
  }

  async cordon(node: string, req: { cordoned: boolean; drain?: boolean }): Promise<{ nodeId: string; evicting: number }> {
    if (!this.isLeader) return (await this.d.forward('POST', `/v1/nodes/${encodeURIComponent(node)}/cordon`, req)) as { nodeId: string; evicting: number };
    const n = this.d.store.listNodes().find((x) => x.name === node || x.nodeId === node);
    if (!n) throw new ApiError('not-found', `node ${node} not found (see blixard get nodes)`);
    await this.propose({ op: 'cordon', time: new Date().toISOString(), nodeId: n.nodeId, cordoned: !!req.cordoned, ...(req.drain ? { drain: true } : {}) });
    const evicting = this.d.store.listPlacements().filter((p) => p.nodeId === n.nodeId && p.evicting).length;
    return { nodeId: n.nodeId, evicting };
  }

  /** A node's own record (capacity, formats, addresses, author), sent by that node. */
  async registerNode(body: unknown, remote: string): Promise<{ ok: true }> {
    if (!this.isLeader) return (await this.d.forward('POST', '/v1/nodes/register', body)) as { ok: true };
    const rec = body as NodeRecord;
    if (rec?.nodeId !== remote) throw new ApiError('unauthorized', 'a node may only register itself');
    if (!this.d.store.admitted(remote)) throw new ApiError('unauthorized', 'not admitted to this cluster');
    const prev = this.d.store.node(remote);
    // The role is the cluster's decision (Peer manifest or join secret), never the node's.
    await this.propose({ op: 'registerNode', time: new Date().toISOString(), node: { ...rec, role: prev?.role ?? rec.role, registeredAt: prev?.registeredAt ?? rec.registeredAt } });
    return { ok: true };
  }

  async logs(vm: string, opts: { tailBytes?: number; follow?: AbortSignal; onData?: (chunk: Buffer) => void }): Promise<Buffer> {
    if (!this.isLeader && this.d.store.clusterId !== null) await this.d.forward('GET', `/v1/resources/virtualmachines/${encodeURIComponent(vm)}`);
    const r = this.d.store.get('VirtualMachine', vm);
    if (!r) throw new ApiError('not-found', `VirtualMachine/${vm} not found`);
    const p = this.d.store.placement(vm);
    if (!p?.nodeId) throw new ApiError('not-found', `VirtualMachine/${vm} is not placed on any node yet`);
    if (p.nodeId !== this.d.nodeId) throw new ApiError('not-found', `VirtualMachine/${vm} runs on ${this.nodeName(p.nodeId)}; ask that node (--server ${this.d.store.node(p.nodeId)?.api ?? '?'})`);
    if (!this.d.vms) throw new ApiError('not-found', 'this node runs no VMs');
    try {
      return await this.d.vms.consoleLog(vm, opts);
    } catch (e) {
      throw new ApiError('not-found', (e as Error).message);
    }
  }

  async propose(cmd: Command): Promise<CommandOutcome> {
    // A leader that lost its quorum keeps proposals waiting; callers get an answer in bounded time.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ApiError('no-leader', `not committed within ${PROPOSE_TIMEOUT_MS / 1000} s: the cluster may have lost its quorum (the change may still be applied later)`)), PROPOSE_TIMEOUT_MS);
    });
    let out: CommandOutcome;
    try {
      out = (await Promise.race([this.d.log.propose(encodeCommand(cmd)), timeout])).result as CommandOutcome;
    } catch (e) {
      if (e instanceof ApiError) throw e;
      // Not the leader (any more), or the entry was lost in a leader change: the client may retry.
      throw new ApiError('no-leader', (e as Error).message);
    } finally {
      clearTimeout(timer);
    }
    return out;
  }

  private async linearizable(): Promise<void> {
    if (!this.d.log.readBarrier) return;
    try {
      await this.d.log.readBarrier(READ_BARRIER_TIMEOUT_MS);
    } catch (e) {
      throw new ApiError('no-leader', `this node could not confirm it still leads the cluster: ${(e as Error).message}; try again`);
    }
  }

  private requireLeader(): void {
    if (this.d.store.clusterId === null && !this.d.log.isLeader) {
      throw new ApiError('no-leader', `node ${this.d.settings.name} is not part of a cluster yet: restart it with --bootstrap or --join TICKET, or admit node id ${this.d.nodeId} with a Peer manifest`);
    }
    if (!this.isLeader) throw new ApiError('no-leader', 'this node is not the leader (leadership moved while the request was handled); try again');
  }

  event(kind: Kind, name: string, type: EventJson['type'], reason: string, message: string): void {
    const key = resourceKey(kind, name);
    const list = this.recent.get(key) ?? [];
    list.push({ time: new Date().toISOString(), type, reason, message });
    while (list.length > EVENTS_PER_RESOURCE) list.shift();
    this.recent.set(key, list);
  }

  private async toJson(r: StoredResource): Promise<ResourceJson> {
    return { apiVersion: API_VERSION, kind: r.kind, metadata: r.metadata, spec: r.spec, status: await this.statusOf(r) };
  }

  private async statusOf(r: StoredResource): Promise<VmStatus | ImageStatus | PeerStatus> {
    switch (r.kind) {
      case 'VirtualMachine': {
        // Observed state only: a placement is a fact of the store; nothing here claims a VM runs.
        const p = this.d.store.placement(r.metadata.name);
        const scheduled: Condition = p?.nodeId
          ? { type: 'Scheduled', status: 'True', reason: 'Placed', message: `placed on ${this.nodeName(p.nodeId)}`, lastTransitionTime: p.since }
          : {
              type: 'Scheduled',
              status: 'False',
              reason: p ? 'Unschedulable' : 'Pending',
              message: p?.reason ?? 'waiting for the scheduler',
              lastTransitionTime: p?.since ?? r.metadata.creationTimestamp,
            };
        if (p?.nodeId && !this.d.nodeReady(p.nodeId)) {
          // Its node is NotReady: what the VM does now is not known (SPEC section 5).
          return { phase: 'Unknown', nodeId: p.nodeId, observedGeneration: 0, conditions: [scheduled], message: `${this.nodeName(p.nodeId)} is NotReady (no heartbeat within the node timeout)` };
        }
        const here = p?.nodeId === this.d.nodeId ? this.d.vms?.report(r.metadata.name) : p?.nodeId ? this.d.remoteVm?.(p.nodeId, r.metadata.name) : undefined;
        if (p?.evicting) {
          return { phase: here ? 'Stopping' : 'Pending', nodeId: p.nodeId, observedGeneration: here?.observedGeneration ?? 0, conditions: [scheduled], message: `moving off ${this.nodeName(p.nodeId!)}: waiting for it to stop the VM` };
        }
        if (here && here.uid === r.metadata.uid) {
          return {
            phase: here.phase,
            nodeId: p!.nodeId,
            observedGeneration: here.observedGeneration,
            conditions: here.conditions.map((c) => ({ ...c, lastTransitionTime: c.type === 'Scheduled' ? p!.since : (here.since[c.type] ?? p!.since) })),
            message: here.message,
          };
        }
        return {
          phase: p?.nodeId && !this.d.nodeReady(p.nodeId) ? 'Unknown' : 'Pending',
          nodeId: p?.nodeId ?? null,
          observedGeneration: 0,
          conditions: [scheduled],
          message: p?.nodeId ? (this.d.nodeReady(p.nodeId) ? `placed on ${this.nodeName(p.nodeId)}; waiting for its report` : `${this.nodeName(p.nodeId)} is not ready`) : scheduled.message,
        };
      }
      case 'Image': {
        const hash = r.source?.hash ?? null;
        const holders = new Set(hash ? (this.d.holders?.(hash) ?? []) : []);
        if (hash && (await this.d.blobs.has(hash).catch(() => false))) holders.add(this.d.nodeId);
        return { hash, size: r.source?.size ?? null, holders: [...holders].sort() };
      }
      case 'Peer': {
        const nodeId = (r.spec as { nodeId: string }).nodeId;
        const h = this.d.peerHealth?.().find((p) => p.nodeId === nodeId);
        return { registered: this.d.store.node(nodeId) !== undefined, ready: this.d.nodeReady(nodeId), connected: h?.connected ?? nodeId === this.d.nodeId, rttMs: h?.rttMs ?? null, lastSeen: h?.lastSeen ?? null };
      }
    }
  }
}

function parseSelectorOrThrow(text: string): Selector {
  try {
    return parseSelector(text);
  } catch (e) {
    if (e instanceof SelectorError) throw new ApiError('invalid', e.message);
    throw e;
  }
}

function nodeJson(n: NodeRecord, ready: boolean, allocated: { vcpus: number; memoryMiB: number }): NodeJson {
  const cordoned = !!n.cordoned;
  return {
    nodeId: n.nodeId,
    name: n.name,
    role: n.role,
    ready,
    labels: n.labels,
    capacity: n.capacity,
    allocated,
    cordoned,
    api: n.api,
    formats: n.formats,
    author: n.author ?? null,
  };
}
