import type { Command, PlaceChange, VmRef } from './commands.js';
import { withDefaults } from './defaults.js';
import { schedule, type SchedNode, type SchedVm } from './scheduler.js';
import type { DesiredStateStore } from './store.js';
import type { ImageSpec, VmSpec } from './types.js';

// What the leader proposes after looking at the store: the scheduler's answer, as one log entry,
// or nothing when the committed placements already are that answer. Pure.

export interface NodeView {
  /** Nodes that may take new VMs now (ready, not cordoned). */
  schedulable(nodeId: string): boolean;
}

export function placementCommand(store: DesiredStateStore, view: NodeView, time: string): Command | null {
  const nodes: SchedNode[] = store.listNodes().map((n) => ({
    nodeId: n.nodeId,
    name: n.name,
    schedulable: view.schedulable(n.nodeId),
    formats: n.formats,
    labels: n.labels,
    capacity: n.capacity,
  }));
  const uid = new Map<string, string>();
  const vms: SchedVm[] = store.list('VirtualMachine').map((r) => {
    const spec = withDefaults('VirtualMachine', r.spec) as VmSpec;
    const image = store.get('Image', spec.image);
    uid.set(r.metadata.name, r.metadata.uid);
    const vm: SchedVm = {
      name: r.metadata.name,
      vcpus: spec.vcpus!,
      memoryMiB: spec.memoryMiB!,
      format: image ? (image.spec as ImageSpec).format : 'unknown',
      labels: r.metadata.labels,
      nodeId: store.placement(r.metadata.name)?.nodeId ?? null,
    };
    if (spec.placement?.nodeSelector) vm.nodeSelector = spec.placement.nodeSelector;
    if (spec.placement?.spreadBy) vm.spreadBy = spec.placement.spreadBy;
    return vm;
  });
  const result = schedule(nodes, vms);
  const ref = (vm: string): VmRef => ({ vm, uid: uid.get(vm)! });
  const place: PlaceChange[] = result.place.map((p) => ({ ...ref(p.vm), nodeId: p.nodeId }));
  const evict = result.evict.filter((vm) => !result.place.some((p) => p.vm === vm)).map(ref);
  // Only reasons that are new or changed: a stable "no node fits" is not re-committed every pass.
  const unschedulable = result.unschedulable
    .filter((u) => {
      const cur = store.placement(u.vm);
      return !cur || cur.nodeId !== null || cur.reason !== u.reason;
    })
    .map((u) => ({ ...ref(u.vm), reason: u.reason }));
  if (place.length === 0 && evict.length === 0 && unschedulable.length === 0) return null;
  return { op: 'place', time, place, evict, unschedulable };
}
