import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { ApiError, type ApiBackend } from '../api/index.js';
import type {
  Condition,
  ApplyRequest,
  ApplyResponse,
  BlobJson,
  DeleteRequest,
  DeleteResponse,
  EventJson,
  ImageStatus,
  NodeJson,
  PeerStatus,
  PlanRequest,
  ResourceJson,
  StatusJson,
  TicketRequest,
  VersionJson,
  VmStatus,
} from '../api/index.js';
import { HashMismatchError, type BlobStore } from '../images/index.js';
import type { ReportedVm } from '../reconciler/index.js';
import type { ConsoleLogOptions } from '../vm/index.js';
import { ACTION_WORD, buildPlan, checkDesired, planChanges, type Plan } from '../reconciler/index.js';
import {
  API_VERSION,
  encodeCommand,
  resourceKey,
  type ApplyOutcome,
  type Command,
  type CommandOutcome,
  type DeleteOutcome,
  type DesiredStateStore,
  type Kind,
  type NodeRecord,
  type StoredResource,
  type VmSpec,
  withDefaults,
} from '../state/index.js';
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
}

export interface BackendDeps {
  nodeId: string;
  settings: NodeSettings;
  store: DesiredStateStore;
  log: ConsensusLog;
  blobs: BlobStore;
  /** The Iroh addresses peers can reach this node on (for tickets). */
  addresses: () => Promise<string[]>;
  /** Known once the API listens (port 0 means the OS chose it). */
  apiUrl: () => string;
  /** Called after every committed change (the scheduler and the reconciler look again). */
  onCommitted?: () => void;
  /** What this node's reconciler reports of the VMs placed here. */
  vms?: { report(name: string): ReportedVm | undefined; consoleLog(name: string, opts: ConsoleLogOptions): Promise<Buffer> };
}

const EVENTS_PER_RESOURCE = 20;
const ERRORS_KEPT = 50;

export class NodeBackend implements ApiBackend {
  private readonly recent = new Map<string, EventJson[]>();
  private readonly errors: StatusJson['errors'] = [];
  constructor(private readonly d: BackendDeps) {}

  get isLeader(): boolean {
    return this.d.store.clusterId !== null;
  }

  recordError(component: string, err: unknown): void {
    this.errors.push({ time: new Date().toISOString(), component, message: (err as Error)?.message ?? String(err) });
    while (this.errors.length > ERRORS_KEPT) this.errors.shift();
  }

  version(): VersionJson {
    return { version: VERSION, apiVersion: API_VERSION, nodeId: this.d.nodeId };
  }

  ready(): boolean {
    return this.isLeader;
  }

  async status(): Promise<StatusJson> {
    const { store, log, settings } = this.d;
    const vms = store.list('VirtualMachine');
    const leader = this.isLeader;
    const notes: string[] = [];
    if (!leader) {
      notes.push(`not part of a cluster yet: restart with --bootstrap, or apply a Peer for node id ${this.d.nodeId} on a cluster`);
    }

    return {
      nodeId: this.d.nodeId,
      name: settings.name,
      clusterId: store.clusterId,
      version: VERSION,
      raft: {
        role: leader ? 'leader' : settings.role === 'worker' ? 'none' : 'follower',
        term: leader ? log.term : 0,
        leader: leader ? this.d.nodeId : null,
        commitIndex: log.commitIndex,
        appliedIndex: log.appliedIndex,
        members: leader ? [{ nodeId: this.d.nodeId, name: settings.name, role: 'voter', api: this.d.apiUrl() }] : [],
      },
      nodes: this.nodes(),
      vms: { total: vms.length, running: (await Promise.all(vms.map((v) => this.statusOf(v)))).filter((st) => (st as VmStatus).phase === 'Running').length },
      images: { total: store.list('Image').length },
      applysets: store.listApplysets().map((a) => ({ name: a.name, index: a.index, time: a.time })),
      errors: [...this.errors],
      notes,
    };
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
    return this.d.store.listNodes().map((n) => nodeJson(n, n.nodeId === this.d.nodeId && this.ready(), allocated.get(n.nodeId) ?? { vcpus: 0, memoryMiB: 0 }));
  }

  private nodeName(nodeId: string): string {
    return this.d.store.node(nodeId)?.name ?? nodeId.slice(0, 10);
  }

  async list(kind: Kind): Promise<ResourceJson[]> {
    return Promise.all(this.d.store.list(kind).map((r) => this.toJson(r)));
  }

  async get(kind: Kind, name: string): Promise<ResourceJson | undefined> {
    const r = this.d.store.get(kind, name);
    return r ? this.toJson(r) : undefined;
  }

  events(kind: Kind, name: string): EventJson[] {
    return this.recent.get(resourceKey(kind, name)) ?? [];
  }

  async plan(req: PlanRequest): Promise<Plan> {
    this.requireLeader();
    const problems = checkDesired(req.desired);
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
    this.requireLeader();
    let plan: Plan;
    if (req.plan) {
      plan = req.plan;
      if (plan.kind !== 'Plan' || !Array.isArray(plan.changes) || typeof plan.id !== 'string') throw new ApiError('invalid', 'expected a saved plan (from `blixard diff --out FILE`)');
      if (plan.clusterId !== this.d.store.clusterId) throw new ApiError('invalid', `the plan was made for cluster ${plan.clusterId}, this is cluster ${this.d.store.clusterId}`);
      const problems = checkDesired(plan.changes.filter((c) => c.desired).map((c) => ({ kind: c.kind, name: c.name, labels: c.desired!.labels, spec: c.desired!.spec })));
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
    const out = (await this.propose({ op: 'apply', time: new Date().toISOString(), planId: plan.id, applyset: plan.applyset, changes: planChanges(plan) })) as ApplyOutcome;
    if (!out.ok) throw new ApiError(out.code === 'conflict' ? 'conflict' : 'invalid', out.message, out.code === 'conflict' ? { conflicts: out.conflicts } : undefined);
    for (const r of out.results) {
      if (r.action === 'unchanged') continue;
      const change = plan.changes.find((c) => c.kind === r.kind && c.name === r.name);
      const what = change?.action === 'configure' ? ` (${change.effect}: ${change.fields.map((f) => f.field).join(', ')})` : '';
      const gen = this.d.store.get(r.kind, r.name)?.metadata.generation;
      this.event(r.kind, r.name, 'Normal', r.action === 'pruned' ? 'Pruned' : r.action === 'created' ? 'Created' : 'Configured', `${r.action} at index ${out.index}${gen ? `, generation ${gen}` : ''}${what}`);
    }
    return { planId: plan.id, dryRun: false, index: out.index, results: out.results };
  }

  async delete(req: DeleteRequest): Promise<DeleteResponse> {
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
      return await this.d.blobs.importStream(hash, body);
    } catch (e) {
      if (e instanceof HashMismatchError) throw new ApiError('invalid', e.message);
      throw e;
    }
  }

  async ticket(req: TicketRequest): Promise<{ ticket: string }> {
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

  async logs(vm: string, opts: { tailBytes?: number; follow?: AbortSignal; onData?: (chunk: Buffer) => void }): Promise<Buffer> {
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
    const out = (await this.d.log.propose(encodeCommand(cmd))).result as CommandOutcome;
    if (out.ok) this.d.onCommitted?.();
    return out;
  }

  private requireLeader(): void {
    if (!this.isLeader) {
      throw new ApiError('no-leader', `node ${this.d.settings.name} is not part of a cluster yet: restart it with --bootstrap, or admit node id ${this.d.nodeId} with a Peer manifest`);
    }
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
        const here = p?.nodeId === this.d.nodeId ? this.d.vms?.report(r.metadata.name) : undefined;
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
          phase: p?.nodeId ? (p.nodeId === this.d.nodeId ? 'Pending' : 'Unknown') : 'Pending',
          nodeId: p?.nodeId ?? null,
          observedGeneration: 0,
          conditions: [scheduled],
          message: p?.nodeId ? (p.nodeId === this.d.nodeId ? 'placed here; the reconciler has not reported yet' : 'placed on another node; its status is not visible from here yet') : scheduled.message,
        };
      }
      case 'Image': {
        const hash = r.source?.hash ?? null;
        let held = false;
        if (hash) held = await this.d.blobs.has(hash).catch(() => false);
        return { hash, size: r.source?.size ?? null, holders: held ? [this.d.nodeId] : [] };
      }
      case 'Peer': {
        const nodeId = (r.spec as { nodeId: string }).nodeId;
        return { registered: this.d.store.node(nodeId) !== undefined, ready: nodeId === this.d.nodeId && this.ready() };
      }
    }
  }
}

function nodeJson(n: NodeRecord, ready: boolean, allocated: { vcpus: number; memoryMiB: number }): NodeJson {
  return {
    nodeId: n.nodeId,
    name: n.name,
    role: n.role,
    ready,
    labels: n.labels,
    capacity: n.capacity,
    allocated,
    api: n.api,
    formats: n.formats,
  };
}
