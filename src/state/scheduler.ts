import type { Labels } from './types.js';

// The scheduler: pure and deterministic. Given the nodes and the VMs (with what is already placed),
// it decides where each unplaced VM goes, or says precisely why it can go nowhere. The leader
// commits its answer through the log; every replica then agrees on the placements.

export interface SchedNode {
  nodeId: string;
  name: string;
  /** Ready and accepting new VMs (not NotReady, not cordoned). */
  schedulable: boolean;
  formats: readonly string[];
  labels: Labels;
  capacity: { vcpus: number; memoryMiB: number };
}

export interface SchedVm {
  name: string;
  vcpus: number;
  memoryMiB: number;
  format: string;
  labels: Labels;
  nodeSelector?: Labels;
  spreadBy?: string;
  /** The node it is placed on now, if any. */
  nodeId: string | null;
}

export interface Placement {
  vm: string;
  nodeId: string;
}

export interface Unschedulable {
  vm: string;
  reason: string;
}

export interface ScheduleResult {
  /** New or changed placements, in VM name order. */
  place: Placement[];
  /** VMs whose current placement no longer holds (node gone, selector or format changed). */
  evict: string[];
  unschedulable: Unschedulable[];
  /** vcpus and memory allocated per node once the result is applied. */
  allocated: Map<string, { vcpus: number; memoryMiB: number }>;
}

function matches(selector: Labels | undefined, labels: Labels): boolean {
  for (const [k, v] of Object.entries(selector ?? {})) if (labels[k] !== v) return false;
  return true;
}

/** Hard constraints of a VM on a node, capacity aside: why it may not run there, or null. */
function hardMisfit(vm: SchedVm, n: SchedNode): 'format' | 'selector' | null {
  if (!n.formats.includes(vm.format)) return 'format';
  if (!matches(vm.nodeSelector, n.labels)) return 'selector';
  return null;
}

export function schedule(nodes: readonly SchedNode[], vms: readonly SchedVm[]): ScheduleResult {
  const byId = new Map(nodes.map((n) => [n.nodeId, n]));
  const allocated = new Map(nodes.map((n) => [n.nodeId, { vcpus: 0, memoryMiB: 0 }]));
  // How many VMs with a given spread value sit on each node: spreadBy key -> value -> node -> count.
  const spread = new Map<string, number>();
  const spreadKey = (vm: SchedVm, nodeId: string) => (vm.spreadBy && vm.labels[vm.spreadBy] !== undefined ? `${vm.spreadBy}=${vm.labels[vm.spreadBy]}@${nodeId}` : null);
  const account = (vm: SchedVm, nodeId: string) => {
    const a = allocated.get(nodeId)!;
    a.vcpus += vm.vcpus;
    a.memoryMiB += vm.memoryMiB;
    const k = spreadKey(vm, nodeId);
    if (k) spread.set(k, (spread.get(k) ?? 0) + 1);
  };

  const evict: string[] = [];
  const pending: SchedVm[] = [];
  const sorted = [...vms].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  // Placed VMs keep their node while it exists and its hard constraints still hold. Capacity is
  // not re-checked: a node that shrank keeps what runs on it (the operator sees it overcommitted).
  for (const vm of sorted) {
    const n = vm.nodeId ? byId.get(vm.nodeId) : undefined;
    if (n && !hardMisfit(vm, n)) account(vm, n.nodeId);
    else {
      if (vm.nodeId) evict.push(vm.name);
      pending.push(vm);
    }
  }

  const place: Placement[] = [];
  const unschedulable: Unschedulable[] = [];
  for (const vm of pending) {
    const why = { notReady: 0, format: 0, selector: 0, cpu: 0, memory: 0 };
    let best: { n: SchedNode; score: [number, number, number] } | undefined;
    for (const n of nodes) {
      if (!n.schedulable) {
        why.notReady++;
        continue;
      }
      const misfit = hardMisfit(vm, n);
      if (misfit) {
        why[misfit]++;
        continue;
      }
      const a = allocated.get(n.nodeId)!;
      const freeCpu = n.capacity.vcpus - a.vcpus;
      const freeMem = n.capacity.memoryMiB - a.memoryMiB;
      if (freeCpu < vm.vcpus) why.cpu++;
      if (freeMem < vm.memoryMiB) why.memory++;
      if (freeCpu < vm.vcpus || freeMem < vm.memoryMiB) continue;
      // Lower is better: fewer VMs of the same spread value, then more free memory, then more free
      // vcpus; ties go to the node listed first (nodes come in a stable order).
      const k = spreadKey(vm, n.nodeId);
      const score: [number, number, number] = [k ? (spread.get(k) ?? 0) : 0, -(freeMem - vm.memoryMiB), -(freeCpu - vm.vcpus)];
      if (!best || lexLess(score, best.score)) best = { n, score };
    }
    if (best) {
      place.push({ vm: vm.name, nodeId: best.n.nodeId });
      account(vm, best.n.nodeId);
    } else {
      unschedulable.push({ vm: vm.name, reason: explain(vm, nodes.length, why) });
    }
  }
  return { place, evict, unschedulable, allocated };
}

function lexLess(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! < b[i]!;
  return false;
}

function explain(vm: SchedVm, total: number, why: { notReady: number; format: number; selector: number; cpu: number; memory: number }): string {
  if (total === 0) return 'no nodes in the cluster';
  const parts: string[] = [];
  if (why.notReady) parts.push(`${why.notReady} not ready or cordoned`);
  if (why.format) parts.push(`${why.format} cannot run format ${vm.format}`);
  if (why.selector) parts.push(`${why.selector} do not match nodeSelector ${Object.entries(vm.nodeSelector ?? {}).map(([k, v]) => `${k}=${v}`).join(',')}`);
  if (why.cpu) parts.push(`${why.cpu} lack ${vm.vcpus} free vcpus`);
  if (why.memory) parts.push(`${why.memory} lack ${vm.memoryMiB} MiB free memory`);
  return `0/${total} nodes fit: ${parts.join('; ')}`;
}
