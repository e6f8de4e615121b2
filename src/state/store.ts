import type { ApplyChange, ApplyOutcome, ClusterDocs, Command, CommandOutcome, Conflict, DeleteOutcome, DeleteTarget, NodeRecord } from './commands.js';
import { decodeCommand } from './commands.js';
import { changeEffects, comparable } from './effects.js';
import { resourceKey, type Kind, type PeerSpec, type StoredResource, type VmSpec } from './types.js';
import { ResourceTable } from './resource-table.js';
import { Touched, TouchedMap } from './touched.js';

// The desired-state store: the Raft state machine. `apply(entry, index)` is deterministic and
// synchronous; every replica that applies the same entries in the same order holds the same state.
// It validates what it can decide alone (versions read by a plan, references between resources)
// and turns a bad entry into an outcome rather than an exception, so a replica never diverges.

export interface ApplysetRecord {
  name: string;
  index: number; // log index of the last apply through this set
  time: string;
  planId: string;
  /** The git commit the set was applied from ("<sha>", "<sha>-dirty"), when known. */
  revision?: string;
}

/** Where the scheduler put a VM, or why it could not. Never changes the VM's resourceVersion. */
export interface PlacementRecord {
  vm: string;
  uid: string;
  nodeId: string | null;
  reason: string | null; // set when nodeId is null: why no node fits
  since: string;
  /**
   * The VM must leave its node (drain, a selector that no longer matches). It is placed elsewhere
   * only once that node reports it gone, or is lost: so that a VM never runs on two nodes.
   */
  evicting?: boolean;
}

export interface JoinSecret {
  secretHash: string;
  role: 'voter' | 'worker';
  expiresAt: string;
  createdAt: string;
}

/** The whole state, as a snapshot holds it. */
export interface Snapshot {
  version: 1;
  clusterId: string | null;
  resources: StoredResource[];
  nodes: NodeRecord[];
  applysets: ApplysetRecord[];
  appliedPlans: string[];
  /**
   * The outcomes of the newest client requests, by request id, oldest first, with the log time
   * (ms) they were applied at (absent before ids; the time, before it was kept).
   */
  requests?: [string, CommandOutcome, number?][];
  joinSecrets: JoinSecret[];
  placements: PlacementRecord[];
  docs: ClusterDocs | null;
}

/** How many applied plan ids the store remembers (a saved plan applies at most once). */
export const PLAN_MEMORY = 1000;
/**
 * Client request ids are remembered with their outcomes for REQUEST_MEMORY_MS of log time (the
 * leaders' clocks in the entries, the same on every replica): a retry comes within the client's
 * --timeout (30 s by default), however many writes came between. At least the newest
 * REQUEST_MEMORY are kept whatever their age, and never more than REQUEST_MEMORY_MAX.
 */
export const REQUEST_MEMORY = 1000;
export const REQUEST_MEMORY_MS = 120_000;
export const REQUEST_MEMORY_MAX = 100_000;

/** What changed in the store since the last takeChanges(), by key: or 'all' after a restore. */
export interface StoreChanges {
  resources: Set<string>; // Kind/name
  placements: Set<string>; // VM name
  nodes: Set<string>; // node id
}

export class DesiredStateStore {
  clusterId: string | null = null;
  private readonly touched = { resources: new Touched<string>(), placements: new Touched<string>(), nodes: new Touched<string>() };
  private resources = new ResourceTable([], this.touched.resources);
  private nodes = tracked(new TouchedMap<string, NodeRecord>(), this.touched.nodes);
  private applysets = new Map<string, ApplysetRecord>();
  private appliedPlans: string[] = [];
  private appliedPlanSet = new Set<string>();
  private requests = new Map<string, { outcome: CommandOutcome; at: number }>(); // insertion order: oldest first
  private joinSecrets: JoinSecret[] = [];
  private placements = tracked(new TouchedMap<string, PlacementRecord>(), this.touched.placements);
  /** Tickets (with secrets) of the cluster and status documents; null with P2P off. */
  docs: ClusterDocs | null = null;
  appliedIndex = 0;

  // --- StateMachine ---

  apply(data: Uint8Array, index: number): CommandOutcome {
    this.appliedIndex = index;
    let cmd: Command;
    try {
      cmd = decodeCommand(data);
    } catch {
      return { ok: false, code: 'unknown', message: 'undecodable log entry' };
    }
    return this.applyCommand(cmd, index);
  }

  applyCommand(cmd: Command, index: number): CommandOutcome {
    this.appliedIndex = Math.max(this.appliedIndex, index);
    if (typeof cmd.requestId !== 'string') return this.applyOp(cmd, index);
    // A request seen before is answered as it was then, and changes nothing now.
    const seen = this.requests.get(cmd.requestId);
    if (seen) return seen.outcome;
    const out = this.applyOp(cmd, index);
    const at = Date.parse(cmd.time) || 0;
    this.requests.set(cmd.requestId, { outcome: out, at });
    for (const [id, r] of this.requests) {
      const size = this.requests.size;
      if (size <= REQUEST_MEMORY || (size <= REQUEST_MEMORY_MAX && r.at > at - REQUEST_MEMORY_MS)) break;
      this.requests.delete(id);
    }
    return out;
  }

  private applyOp(cmd: Command, index: number): CommandOutcome {
    switch (cmd.op) {
      case 'bootstrap':
        if (this.clusterId !== null) return { ok: false, code: 'exists', message: `cluster ${this.clusterId} is already bootstrapped` };
        this.clusterId = cmd.clusterId;
        this.nodes.set(cmd.node.nodeId, { ...cmd.node });
        if (cmd.docs) this.docs = cmd.docs;
        return { ok: true, index };
      case 'setDocs':
        this.docs = cmd.docs;
        return { ok: true, index };
      case 'admitNode':
        return this.admit(cmd.node, cmd.secretHash, cmd.time, index);
      case 'registerNode': {
        const prev = this.nodes.get(cmd.node.nodeId);
        // Only a member may (re-)register: a node whose Peer was removed stays removed.
        if (!prev && this.clusterId !== null && !this.peerRoles().has(cmd.node.nodeId)) return { ok: false, code: 'invalid', message: `node ${cmd.node.nodeId} is not a member of this cluster` };
        // Cordoning is the cluster's decision: a node re-registering does not undo it.
        this.nodes.set(cmd.node.nodeId, { ...cmd.node, registeredAt: prev?.registeredAt ?? cmd.node.registeredAt, ...(prev?.cordoned ? { cordoned: true } : {}) });
        return { ok: true, index };
      }
      case 'apply':
        return this.applySet(cmd.planId, cmd.applyset, cmd.time, cmd.changes, index, cmd.revision);
      case 'delete':
        return this.deleteTargets(cmd.targets, index);
      case 'place':
        return this.applyPlacements(cmd, index);
      case 'cordon': {
        const n = this.nodes.get(cmd.nodeId);
        if (!n) return { ok: false, code: 'unknown', message: `no node ${cmd.nodeId}` };
        this.nodes.set(cmd.nodeId, { ...n, cordoned: cmd.cordoned, updatedAt: cmd.time });
        // Draining: every VM on the node is evicted (moved once the node reports it stopped).
        if (cmd.drain) {
          for (const p of this.placements.values()) if (p.nodeId === cmd.nodeId && !p.evicting) this.placements.set(p.vm, { ...p, evicting: true, since: cmd.time });
        }
        return { ok: true, index };
      }
      case 'addJoinSecret':
        // Expired secrets go when a new one comes: time comes from entries, never from a clock.
        this.joinSecrets = this.joinSecrets.filter((s) => s.expiresAt > cmd.time);
        this.joinSecrets.push({ secretHash: cmd.secretHash, role: cmd.role, expiresAt: cmd.expiresAt, createdAt: cmd.time });
        return { ok: true, index };
      default:
        return { ok: false, code: 'unknown', message: `unknown command ${(cmd as { op: string }).op}` };
    }
  }

  snapshot(): Uint8Array {
    const s: Snapshot = {
      version: 1,
      clusterId: this.clusterId,
      resources: [...this.resources.values()],
      nodes: [...this.nodes.values()],
      applysets: [...this.applysets.values()],
      appliedPlans: this.appliedPlans,
      requests: [...this.requests].map(([id, r]) => [id, r.outcome, r.at]),
      joinSecrets: this.joinSecrets,
      placements: [...this.placements.values()],
      docs: this.docs,
    };
    return Buffer.from(JSON.stringify(s), 'utf8');
  }

  restore(data: Uint8Array, index: number): void {
    this.load(JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8')) as Snapshot, index);
  }

  /** Replaces the whole state (a worker mirroring the cluster document loads it this way). */
  load(s: Snapshot, index: number): void {
    if (s.version !== 1) throw new Error(`unsupported store snapshot version ${String(s.version)}`);
    this.clusterId = s.clusterId;
    this.resources = new ResourceTable(s.resources, this.touched.resources);
    this.nodes = tracked(new TouchedMap(s.nodes.map((n) => [n.nodeId, n])), this.touched.nodes);
    this.applysets = new Map(s.applysets.map((a) => [a.name, a]));
    this.appliedPlans = s.appliedPlans;
    this.appliedPlanSet = new Set(s.appliedPlans);
    this.requests = new Map((s.requests ?? []).map(([id, outcome, at]) => [id, { outcome, at: at ?? 0 }]));
    this.joinSecrets = s.joinSecrets;
    this.placements = tracked(new TouchedMap((s.placements ?? []).map((p) => [p.vm, p])), this.touched.placements);
    for (const t of Object.values(this.touched)) t.all();
    this.docs = s.docs ?? null;
    this.appliedIndex = index;
  }

  /**
   * The keys the commands since the last call set or deleted, or 'all' the first time, after a
   * restore or load, or when nobody asked for very long (a follower never does).
   */
  takeChanges(): StoreChanges | 'all' {
    const resources = this.touched.resources.take();
    const placements = this.touched.placements.take();
    const nodes = this.touched.nodes.take();
    if (resources === 'all' || placements === 'all' || nodes === 'all') return 'all';
    return { resources, placements, nodes };
  }


  // --- reads ---

  get(kind: Kind, name: string): StoredResource | undefined {
    return this.resources.get(kind, name);
  }

  list(kind?: Kind): StoredResource[] {
    const out: StoredResource[] = [];
    for (const r of kind ? this.resources.ofKind(kind) : this.resources.values()) out.push(r);
    return out.sort((a, b) => (a.kind === b.kind ? cmp(a.metadata.name, b.metadata.name) : cmp(a.kind, b.kind)));
  }

  /** Resources whose inventory is `applyset`: what `--prune` may delete. */
  inventory(applyset: string): StoredResource[] {
    return this.list().filter((r) => r.applyset === applyset);
  }

  applyset(name: string): ApplysetRecord | undefined {
    return this.applysets.get(name);
  }

  listApplysets(): ApplysetRecord[] {
    return [...this.applysets.values()].sort((a, b) => cmp(a.name, b.name));
  }

  listNodes(): NodeRecord[] {
    return [...this.nodes.values()].sort((a, b) => cmp(a.name, b.name));
  }

  node(nodeId: string): NodeRecord | undefined {
    return this.nodes.get(nodeId);
  }

  placement(vm: string): PlacementRecord | undefined {
    const p = this.placements.get(vm);
    // A placement belongs to the VM it was made for, not to a later VM of the same name.
    return p && p.uid === this.resources.get('VirtualMachine', vm)?.metadata.uid ? p : undefined;
  }

  listPlacements(): PlacementRecord[] {
    return [...this.placements.values()].filter((p) => this.placement(p.vm) === p);
  }

  hasAppliedPlan(planId: string): boolean {
    return this.appliedPlanSet.has(planId);
  }

  activeJoinSecrets(now: string): JoinSecret[] {
    return this.joinSecrets.filter((s) => s.expiresAt > now);
  }

  get size(): number {
    return this.resources.size;
  }

  // --- commands ---

  /** The node ids the Peers name, with the role each gives. */
  private peerRoles(): Map<string, NodeRecord['role']> {
    const out = new Map<string, NodeRecord['role']>();
    for (const r of this.resources.ofKind('Peer')) out.set((r.spec as PeerSpec).nodeId, ((r.spec as PeerSpec).role ?? 'worker') as NodeRecord['role']);
    return out;
  }

  /**
   * Peers are membership (SPEC section 2): a node whose Peer went is no longer a member (its record
   * goes, with it its admission, its Raft vote and its placements), and a Peer's role is the
   * node's role. A node that never had a Peer (the one that bootstrapped) is left alone.
   */
  private followPeers(before: Map<string, NodeRecord['role']>): void {
    const after = this.peerRoles();
    for (const [id, n] of [...this.nodes]) {
      const role = after.get(id);
      if (role === undefined) {
        if (before.has(id)) this.nodes.delete(id);
      } else if (role !== n.role) this.nodes.set(id, { ...n, role });
    }
  }

  private applySet(planId: string, applyset: string, time: string, changes: ApplyChange[], index: number, revision?: string): ApplyOutcome {
    if (this.appliedPlanSet.has(planId)) {
      return { ok: false, code: 'conflict', message: `plan ${planId} was already applied`, conflicts: [] };
    }
    const conflicts: Conflict[] = [];
    for (const c of changes) {
      const current = this.resources.get(c.kind, c.name)?.metadata.resourceVersion ?? 0;
      if (current !== c.read) conflicts.push({ kind: c.kind, name: c.name, read: c.read, current });
    }
    if (conflicts.length > 0) {
      const list = conflicts.map((c) => `${c.kind}/${c.name} (read version ${c.read}, now ${c.current})`).join(', ');
      return { ok: false, code: 'conflict', message: `changed since the plan read it: ${list}`, conflicts };
    }
    const invalid = this.referenceProblems(
      changes.filter((c) => c.action !== 'prune'),
      changes.filter((c) => c.action === 'prune'),
    );
    if (invalid) return { ok: false, code: 'invalid', message: invalid };

    const results: Extract<ApplyOutcome, { ok: true }>['results'] = [];
    const peersBefore = changes.some((c) => c.kind === 'Peer') ? this.peerRoles() : null;
    for (const c of changes) {
      const key = resourceKey(c.kind, c.name);
      const cur = this.resources.get(c.kind, c.name);
      if (c.action === 'prune') {
        this.resources.delete(c.kind, c.name);
        if (c.kind === 'VirtualMachine') this.placements.delete(c.name);
        results.push({ kind: c.kind, name: c.name, action: 'pruned' });
        continue;
      }
      if (!cur) {
        const r: StoredResource = {
          kind: c.kind,
          metadata: { name: c.name, labels: { ...(c.labels ?? {}) }, uid: uidFor(this.clusterId, index, key), generation: 1, resourceVersion: index, creationTimestamp: time },
          spec: c.spec!,
          applyset,
        };
        if (c.source) r.source = c.source;
        this.resources.set(r);
        results.push({ kind: c.kind, name: c.name, action: 'created' });
        continue;
      }
      // Decide "configured" here, not from the plan's label, so the stored state is a function of
      // the log alone. The plan's version check already guarantees the two agree.
      const fx = changeEffects(c.kind, comparable(c.kind, cur.metadata.labels, cur.spec, cur.source), comparable(c.kind, c.labels ?? {}, c.spec!, c.source));
      const owned = cur.applyset === applyset;
      if (fx.patch.length === 0) {
        if (!owned) this.resources.set({ ...cur, applyset, metadata: { ...cur.metadata, resourceVersion: index } });
        results.push({ kind: c.kind, name: c.name, action: 'unchanged' });
        continue;
      }
      const next: StoredResource = {
        kind: c.kind,
        metadata: {
          ...cur.metadata,
          labels: { ...(c.labels ?? {}) },
          generation: cur.metadata.generation + (fx.specChanged ? 1 : 0),
          resourceVersion: index,
        },
        spec: c.spec!,
        applyset,
      };
      if (c.source) next.source = c.source;
      this.resources.set(next);
      results.push({ kind: c.kind, name: c.name, action: 'configured' });
    }
    if (peersBefore) this.followPeers(peersBefore);
    this.rememberPlan(planId);
    this.applysets.set(applyset, { name: applyset, index, time, planId, ...(revision ? { revision } : {}) });
    return { ok: true, index, results };
  }

  private deleteTargets(targets: DeleteTarget[], index: number): DeleteOutcome {
    const existing = targets.filter((t) => this.resources.has(t.kind, t.name));
    const invalid = this.referenceProblems([], existing);
    if (invalid) return { ok: false, code: 'invalid', message: invalid };
    const results: Extract<DeleteOutcome, { ok: true }>['results'] = [];
    const peersBefore = targets.some((t) => t.kind === 'Peer') ? this.peerRoles() : null;
    for (const t of targets) {
      const had = this.resources.delete(t.kind, t.name);
      if (t.kind === 'VirtualMachine') this.placements.delete(t.name);
      results.push({ kind: t.kind, name: t.name, action: had ? 'deleted' : 'notfound' });
    }
    if (peersBefore) this.followPeers(peersBefore);
    return { ok: true, index, results };
  }

  /**
   * A node joins with a ticket: its secret must be live (checked against the entry's time, not a
   * clock), and the node gets a node record and a Peer named by its --name (SPEC section 2). A
   * Peer manifest for that node id, if any, wins: it is left as written.
   */
  private admit(node: NodeRecord, secretHash: string, time: string, index: number): CommandOutcome {
    const secret = this.joinSecrets.find((s) => s.secretHash === secretHash && s.expiresAt > time);
    if (!secret) return { ok: false, code: 'invalid', message: 'the join secret is unknown or expired' };
    const existing = this.list('Peer').find((r) => (r.spec as PeerSpec).nodeId === node.nodeId);
    const role = existing ? ((existing.spec as PeerSpec).role ?? 'worker') : secret.role;
    this.nodes.set(node.nodeId, { ...node, role, registeredAt: this.nodes.get(node.nodeId)?.registeredAt ?? time });
    if (!existing) {
      let name = node.name;
      // Names are unique per kind: a taken name gets the node id's first digits.
      if (this.resources.has('Peer', name)) name = `${name}-${node.nodeId.slice(0, 6)}`.slice(0, 63);
      const key = resourceKey('Peer', name);
      this.resources.set({
        kind: 'Peer',
        metadata: { name, labels: { ...node.labels }, uid: uidFor(this.clusterId, index, key), generation: 1, resourceVersion: index, creationTimestamp: time },
        spec: { nodeId: node.nodeId, addresses: [...node.addresses], role },
        applyset: null,
      });
    }
    return { ok: true, index };
  }

  /** Whether a node id may talk to this cluster: a Peer names it, or it joined with a secret. */
  admitted(nodeId: string): boolean {
    if (this.nodes.has(nodeId)) return true;
    for (const r of this.resources.ofKind('Peer')) if ((r.spec as PeerSpec).nodeId === nodeId) return true;
    return false;
  }

  private applyPlacements(cmd: Extract<Command, { op: 'place' }>, index: number): CommandOutcome {
    // Decisions about VMs that changed identity since the scheduler looked are dropped.
    const current = (r: { vm: string; uid: string }) => this.resources.get('VirtualMachine', r.vm)?.metadata.uid === r.uid;
    for (const e of cmd.evict) {
      const p = this.placements.get(e.vm);
      if (current(e) && p?.nodeId && !p.evicting) this.placements.set(e.vm, { ...p, evicting: true, since: cmd.time });
    }
    for (const r of cmd.release ?? []) if (current(r)) this.placements.delete(r.vm);
    for (const p of cmd.place) {
      if (current(p)) this.placements.set(p.vm, { vm: p.vm, uid: p.uid, nodeId: p.nodeId, reason: null, since: cmd.time });
    }
    for (const u of cmd.unschedulable) {
      const prev = this.placements.get(u.vm);
      if (!current(u)) continue;
      if (prev && prev.uid === u.uid && prev.nodeId === null && prev.reason === u.reason) continue;
      this.placements.set(u.vm, { vm: u.vm, uid: u.uid, nodeId: null, reason: u.reason, since: cmd.time });
    }
    return { ok: true, index };
  }

  /** A VM must name an Image that exists once the change is made (SPEC section 2). */
  private referenceProblems(upserts: { kind: Kind; name: string; spec?: unknown }[], removals: { kind: Kind; name: string }[]): string | null {
    const removed = new Set(removals.map((r) => resourceKey(r.kind, r.name)));
    const upserted = new Map(upserts.map((u) => [resourceKey(u.kind, u.name), u]));
    const imageExists = (name: string) => {
      const key = resourceKey('Image', name);
      return upserted.has(key) || (this.resources.has('Image', name) && !removed.has(key));
    };
    const problems: string[] = [];
    for (const u of upserts) {
      if (u.kind !== 'VirtualMachine') continue;
      const image = (u.spec as VmSpec).image;
      if (!imageExists(image)) problems.push(`VirtualMachine/${u.name} needs Image/${image}, which does not exist`);
    }
    const removedImages = removals.filter((r) => r.kind === 'Image' && !upserted.has(resourceKey('Image', r.name)));
    if (removedImages.length > 0) {
      const gone = new Set(removedImages.map((r) => r.name));
      for (const r of this.resources.ofKind('VirtualMachine')) {
        const key = resourceKey(r.kind, r.metadata.name);
        if (removed.has(key) || upserted.has(key)) continue;
        const image = (r.spec as VmSpec).image;
        if (gone.has(image)) problems.push(`Image/${image} is still used by VirtualMachine/${r.metadata.name}`);
      }
    }
    return problems.length > 0 ? problems.join('; ') : null;
  }

  private rememberPlan(planId: string): void {
    this.appliedPlans.push(planId);
    this.appliedPlanSet.add(planId);
    while (this.appliedPlans.length > PLAN_MEMORY) this.appliedPlanSet.delete(this.appliedPlans.shift()!);
  }
}

/** A uid every replica derives alike from the entry that created the resource. */
export function uidFor(clusterId: string | null, index: number, key: string): string {
  // node:crypto is loaded on first use, not with this folder (which CLI commands import).
  const h = process.getBuiltinModule('node:crypto').createHash('sha256').update(`${clusterId ?? ''}/${index}/${key}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${((parseInt(h.slice(16, 17), 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function tracked<K, V>(m: TouchedMap<K, V>, t: Touched<K>): TouchedMap<K, V> {
  m.touched = t;
  return m;
}
