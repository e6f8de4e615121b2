import type { Condition, DriftJson, ImageStatus, NodeJson, PeerHealthJson, PeerStatus, VmStatus } from '../api/index.js';
import type { ReportedVm } from '../reconciler/index.js';
import { withDefaults, type DesiredStateStore, type NodeRecord, type StoredResource, type VmSpec } from '../state/index.js';

// The status the API shows (SPEC section 5), read from facts: the store's desired state and
// placements, what nodes report of their VMs (the status document, or this node's reconciler),
// and who is ready. Observed state only: a placement is a fact of the store; nothing here claims a
// VM runs. Pure: the caller gathers the facts.

export interface StatusFacts {
  self: string;
  store: DesiredStateStore;
  /** Whether a node is up (this one, or a peer heartbeating / answering pings). */
  nodeReady(nodeId: string): boolean;
  /** What a node reports of a VM placed on it (this node's reconciler, or the status document). */
  reported(nodeId: string, vm: string): ReportedVm | undefined;
  /** The nodes that hold a blob whole (the status document). */
  holders(hash: string): string[];
  peerHealth(): PeerHealthJson[];
}

export function nodeName(f: StatusFacts, nodeId: string): string {
  return f.store.node(nodeId)?.name ?? nodeId.slice(0, 10);
}

export function vmStatus(f: StatusFacts, r: StoredResource): VmStatus {
  const p = f.store.placement(r.metadata.name);
  const scheduled: Condition = p?.nodeId
    ? { type: 'Scheduled', status: 'True', reason: 'Placed', message: `placed on ${nodeName(f, p.nodeId)}`, lastTransitionTime: p.since }
    : {
        type: 'Scheduled',
        status: 'False',
        reason: p ? 'Unschedulable' : 'Pending',
        message: p?.reason ?? 'waiting for the scheduler',
        lastTransitionTime: p?.since ?? r.metadata.creationTimestamp,
      };
  if (p?.nodeId && !f.nodeReady(p.nodeId)) {
    // Its node is NotReady: what the VM does now is not known (SPEC section 5).
    return { phase: 'Unknown', nodeId: p.nodeId, observedGeneration: 0, conditions: [scheduled], message: `${nodeName(f, p.nodeId)} is NotReady (no heartbeat within the node timeout)` };
  }
  const here = p?.nodeId ? f.reported(p.nodeId, r.metadata.name) : undefined;
  if (p?.evicting) {
    return { phase: here ? 'Stopping' : 'Pending', nodeId: p.nodeId, observedGeneration: here?.observedGeneration ?? 0, conditions: [scheduled], message: `moving off ${nodeName(f, p.nodeId!)}: waiting for it to stop the VM` };
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
    phase: p?.nodeId && !f.nodeReady(p.nodeId) ? 'Unknown' : 'Pending',
    nodeId: p?.nodeId ?? null,
    observedGeneration: 0,
    conditions: [scheduled],
    message: p?.nodeId ? (f.nodeReady(p.nodeId) ? `placed on ${nodeName(f, p.nodeId)}; waiting for its report` : `${nodeName(f, p.nodeId)} is not ready`) : scheduled.message,
  };
}

/** `heldHere`: whether this node holds the image whole (its own store, asked by the caller). */
export function imageStatus(f: StatusFacts, r: StoredResource, heldHere: boolean): ImageStatus {
  const hash = r.source?.hash ?? null;
  const holders = new Set(hash ? f.holders(hash) : []);
  if (hash && heldHere) holders.add(f.self);
  return { hash, size: r.source?.size ?? null, holders: [...holders].sort() };
}

export function peerStatus(f: StatusFacts, r: StoredResource): PeerStatus {
  const nodeId = (r.spec as { nodeId: string }).nodeId;
  const h = f.peerHealth().find((p) => p.nodeId === nodeId);
  return { registered: f.store.node(nodeId) !== undefined, ready: f.nodeReady(nodeId), connected: h?.connected ?? nodeId === f.self, rttMs: h?.rttMs ?? null, lastSeen: h?.lastSeen ?? null };
}

/** Every node with what is placed on it. */
export function nodesJson(f: StatusFacts): NodeJson[] {
  const allocated = new Map<string, { vcpus: number; memoryMiB: number }>();
  for (const p of f.store.listPlacements()) {
    if (!p.nodeId) continue;
    const spec = withDefaults('VirtualMachine', f.store.get('VirtualMachine', p.vm)!.spec) as VmSpec;
    const a = allocated.get(p.nodeId) ?? { vcpus: 0, memoryMiB: 0 };
    a.vcpus += spec.vcpus!;
    a.memoryMiB += spec.memoryMiB!;
    allocated.set(p.nodeId, a);
  }
  return f.store.listNodes().map((n) => nodeJson(n, f.nodeReady(n.nodeId), allocated.get(n.nodeId) ?? { vcpus: 0, memoryMiB: 0 }));
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
    cordoned: !!n.cordoned,
    api: n.api,
    formats: n.formats,
    author: n.author ?? null,
  };
}

/** A VM not in its desired state or behind its generation, or null when it is where it should be. */
export function vmDrift(r: StoredResource, st: VmStatus): DriftJson | null {
  const want = (r.spec as VmSpec).state ?? 'Running';
  const behind = st.observedGeneration !== r.metadata.generation;
  if (st.phase === want && !behind) return null;
  const why = [st.phase !== want ? `desired ${want}, observed ${st.phase}` : '', behind ? `observed generation ${st.observedGeneration} of ${r.metadata.generation}` : ''].filter(Boolean).join('; ');
  return { kind: 'VirtualMachine', name: r.metadata.name, nodeId: st.nodeId, why, message: st.message };
}

/** Images not yet on a node that runs a VM needing them. `heldHere` answers for this node. */
export function imageDrift(f: StatusFacts, heldHere: (hash: string) => Promise<boolean>): Promise<DriftJson[]> {
  return Promise.all(
    f.store.listPlacements().map(async (p): Promise<DriftJson | null> => {
      if (!p.nodeId) return null;
      const vm = f.store.get('VirtualMachine', p.vm)!;
      const image = f.store.get('Image', (vm.spec as VmSpec).image);
      const hash = image?.source?.hash;
      if (!image || !hash) return null;
      const held = p.nodeId === f.self ? await heldHere(hash) : f.holders(hash).includes(p.nodeId);
      return held ? null : { kind: 'Image', name: image.metadata.name, nodeId: p.nodeId, why: `not yet on ${nodeName(f, p.nodeId)}, which runs VirtualMachine/${p.vm}`, message: '' };
    }),
  ).then((xs) => xs.filter((x): x is DriftJson => x !== null));
}
