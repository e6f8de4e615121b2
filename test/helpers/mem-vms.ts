import { NodeReconciler, type NodeReconcilerDeps, type ReportedVm } from '../../src/reconciler/index.js';
import type { DesiredView, NodeRecord, PlacementRecord, StoredResource } from '../../src/state/index.js';
import type { Driver, ImageFormat, StopResult, VmObservation, VmSpecForDriver } from '../../src/vm/index.js';

// In-memory stand-ins for a node's VMs: a driver that records what it was asked to do, and a
// desired state with VMs placed on nodes. For reconciler tests that need no real process.

export class MemDriver implements Driver {
  readonly name = 'process' as const;
  readonly formats: readonly ImageFormat[] = ['executable'];
  readonly root = '/nonexistent';
  readonly vms = new Map<string, { uid: string; running: boolean; launch: number }>();
  readonly log: string[] = [];
  async available() {
    return { ok: true };
  }
  async create(spec: VmSpecForDriver) {
    this.log.push(`create ${spec.name}`);
    const v = this.vms.get(spec.name);
    if (!v) this.vms.set(spec.name, { uid: spec.uid, running: false, launch: 0 });
  }
  async start(name: string) {
    this.log.push(`start ${name}`);
    const v = this.vms.get(name)!;
    v.running = true;
    v.launch++;
  }
  async stop(name: string): Promise<StopResult> {
    this.log.push(`stop ${name}`);
    const v = this.vms.get(name);
    if (v) v.running = false;
    return { outcome: 'graceful', elapsedMs: 1 };
  }
  async delete(name: string) {
    this.log.push(`delete ${name}`);
    this.vms.delete(name);
  }
  readonly inspected: string[] = [];
  async inspect(name: string): Promise<VmObservation> {
    this.inspected.push(name);
    const v = this.vms.get(name);
    if (!v) return { name, uid: '', state: 'missing', driver: 'process' };
    return { name, uid: v.uid, state: v.running ? 'running' : 'stopped', driver: 'process', launchId: `l${v.launch}`, startedAt: new Date(0).toISOString(), ...(v.running ? { pid: 1000 + v.launch } : {}) };
  }
  async list() {
    return Promise.all([...this.vms.keys()].map((n) => this.inspect(n)));
  }
  async consoleLog() {
    return Buffer.from('');
  }
}

export const meta = (name: string, uid = `uid-${name}`) => ({ name, labels: {}, uid, generation: 1, resourceVersion: 1, creationTimestamp: new Date(0).toISOString() });

export class MemView implements DesiredView {
  resources: StoredResource[] = [{ kind: 'Image', metadata: meta('app'), spec: { path: 'app.sh', format: 'executable' }, source: { hash: `blake3:${'a'.repeat(64)}`, size: 1 }, applyset: null }];
  placements = new Map<string, PlacementRecord>();
  place(vm: string, nodeId: string | null) {
    if (!this.resources.some((r) => r.metadata.name === vm)) this.resources.push({ kind: 'VirtualMachine', metadata: meta(vm), spec: { image: 'app' }, applyset: null });
    this.placements.set(vm, { vm, uid: `uid-${vm}`, nodeId, reason: null, since: new Date(0).toISOString() });
  }
  get(kind: string, name: string) {
    return this.resources.find((r) => r.kind === kind && r.metadata.name === name);
  }
  list(kind?: string) {
    return this.resources.filter((r) => !kind || r.kind === kind);
  }
  placement(vm: string) {
    return this.placements.get(vm);
  }
  listNodes(): NodeRecord[] {
    return [];
  }
}


/** A node reconciler over these, node `me`, every image present; the caller stops it. */
export function memReconciler(view: MemView, drv: MemDriver, o: { resyncMs?: number; gate?: NodeReconcilerDeps['gate']; alive?: (pid: number) => boolean } = {}): { r: NodeReconciler; reports: Map<string, ReportedVm | null> } {
  const reports = new Map<string, ReportedVm | null>();
  const r = new NodeReconciler({
    nodeId: 'me',
    nodeName: 'me',
    view: () => view,
    drivers: [drv],
    images: { has: async () => true, pathFor: async () => '/bin/true' },
    ledger: { load: async () => ({}), save: async () => {} },
    resyncMs: o.resyncMs ?? 60_000,
    report: (name, rep) => reports.set(name, rep),
    ...(o.gate ? { gate: o.gate } : {}),
    alive: o.alive ?? (() => true),
    event: () => {},
    log: { warn() {}, info() {}, debug() {} },
  });
  return { r, reports };
}
