import type { Command, PlaceChange, VmRef } from './commands.js';
import { withDefaults } from './defaults.js';
import { schedule, type SchedNode, type SchedVm } from './scheduler.js';
import type { DesiredStateStore } from './store.js';
import type { ImageSpec, VmSpec } from './types.js';

// What the leader proposes after looking at the store: the scheduler's answer, as one log entry,
// or nothing when the committed placements already are that answer. Pure.

export interface NodeView {
  /** Nodes that may take new VMs now (ready; cordoning is read from the store). */
  schedulable(nodeId: string): boolean;
  /**
   * Nodes silent for longer than --node-timeout plus --fence-after: they have stopped their own
   * VMs by now (fencing), so those VMs may run elsewhere.
   */
  lost?(nodeId: string): boolean;
  /** The node reports the VM gone (stopped and removed): an evicted VM may be placed again. */
  vmGone?(nodeId: string, vm: string): boolean;
}

export function placementCommand(store: DesiredStateStore, view: NodeView, time: string): Extract<Command, { op: 'place' }> | null {
  const lost = (id: string) => view.lost?.(id) ?? false;
  // A lost node is as good as gone: its VMs go elsewhere (it fenced itself before we got here).
  const nodes: SchedNode[] = store.listNodes().filter((n) => !lost(n.nodeId)).map((n) => ({
    nodeId: n.nodeId,
    name: n.name,
    schedulable: view.schedulable(n.nodeId) && !n.cordoned,
    formats: n.formats,
    labels: n.labels,
    capacity: n.capacity,
  }));
  const uid = new Map<string, string>();
  const release: VmRef[] = [];
  const evicting = new Set<string>();
  for (const p of store.listPlacements()) {
    if (!p.evicting || !p.nodeId) continue;
    if (lost(p.nodeId) || view.vmGone?.(p.nodeId, p.vm) || !store.node(p.nodeId)) release.push({ vm: p.vm, uid: p.uid });
    else evicting.add(p.vm); // still on its old node: not placed anywhere else yet
  }
  const released = new Set(release.map((r) => r.vm));
  const vms: SchedVm[] = store.list('VirtualMachine').filter((r) => !evicting.has(r.metadata.name)).map((r) => {
    const spec = withDefaults('VirtualMachine', r.spec) as VmSpec;
    const image = store.get('Image', spec.image);
    uid.set(r.metadata.name, r.metadata.uid);
    const vm: SchedVm = {
      name: r.metadata.name,
      vcpus: spec.vcpus!,
      memoryMiB: spec.memoryMiB!,
      format: image ? (image.spec as ImageSpec).format : 'unknown',
      labels: r.metadata.labels,
      nodeId: released.has(r.metadata.name) ? null : (store.placement(r.metadata.name)?.nodeId ?? null),
    };
    if (spec.placement?.nodeSelector) vm.nodeSelector = spec.placement.nodeSelector;
    if (spec.placement?.spreadBy) vm.spreadBy = spec.placement.spreadBy;
    return vm;
  });
  const result = schedule(nodes, vms);
  const ref = (vm: string): VmRef => ({ vm, uid: uid.get(vm)! });
  // A VM whose node is gone or lost is placed again now; one whose node is alive but no longer
  // fits (selector, format) is evicted first and placed once that node has let it go.
  const goneOrLost = (vm: string) => {
    const n = store.placement(vm)?.nodeId;
    return !n || lost(n) || !store.node(n) || released.has(vm);
  };
  const evict = result.evict.filter((vm) => !goneOrLost(vm)).map(ref);
  const moving = new Set(evict.map((e) => e.vm));
  const place: PlaceChange[] = result.place.filter((p) => !moving.has(p.vm)).map((p) => ({ ...ref(p.vm), nodeId: p.nodeId }));
  // Only reasons that are new or changed: a stable "no node fits" is not re-committed every pass.
  const unschedulable = result.unschedulable
    .filter((u) => !moving.has(u.vm))
    .filter((u) => {
      const cur = store.placement(u.vm);
      return !cur || cur.nodeId !== null || cur.reason !== u.reason;
    })
    .map((u) => ({ ...ref(u.vm), reason: u.reason }));
  if (place.length === 0 && evict.length === 0 && unschedulable.length === 0 && release.length === 0) return null;
  return { op: 'place', time, place, evict, unschedulable, release };
}
