import { createHash } from 'node:crypto';
import type { DesiredView } from '../state/index.js';
import type { ConsoleLogOptions, Driver, VmObservation, VmSpecForDriver } from '../vm/index.js';
import { pidExists } from '../host/index.js';
import { desiredVmsFor } from './desired.js';
import { WorkQueue } from './queue.js';
import { planVm, type DesiredVm, type LaunchedVm, type ObservedVm, type VmAction } from './vm-plan.js';
import { reportVm, type VmReport } from './vm-status.js';

// The per-node reconcile loop (SPEC section 1, step 7): for every VM placed here, make the image
// content present, then create, start, stop, restart, recreate or delete through the drivers until
// what runs matches what is desired. Level-triggered: every pass re-reads desired and observed
// state; a resync re-queues everything, so a missed event heals. Errors retry with per-VM backoff.

export interface ImageAccess {
  has(hash: string): Promise<boolean>;
  pathFor(hash: string): Promise<string>;
  /** Fetch content from peers; absent on a node that cannot (single node, P2P off). */
  pull?(hashes: string[], vm: string, onProgress: (bytes: number, total: number | null) => void): Promise<void>;
}

export interface VmEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface ReportedVm extends VmReport {
  name: string;
  uid: string;
  generation: number;
  nodeId: string;
  /** When each condition last changed status. */
  since: Record<string, string>;
  /** What the driver last saw: running, stopped, exited, missing or unknown. */
  observedState: ObservedVm['state'];
  lastExit?: ObservedVm['exit'];
}

export interface NodeReconcilerDeps {
  nodeId: string;
  nodeName: string;
  view: () => DesiredView;
  drivers: Driver[];
  images: ImageAccess;
  /** Where this node keeps what it launched, across daemon restarts (durable writes). */
  ledger: { load(): Promise<Record<string, LaunchedVm>>; save(all: Record<string, LaunchedVm>): Promise<void> };
  stopGraceMs?: number;
  resyncMs?: number;
  /** Whether a process still exists (default: signal 0); polled for running VMs every second. */
  alive?: (pid: number) => boolean;
  report: (name: string, r: ReportedVm | null) => void;
  /**
   * Whether this node may act (SPEC section 4): `fenced` when cut off from the cluster for longer
   * than --fence-after (it stops its VMs), `mayStart` when it is in touch and caught up.
   */
  gate?: () => { fenced: boolean; mayStart: boolean; why?: string };
  event: (name: string, e: VmEvent) => void;
  log: { warn(o: object, m?: string): void; info(o: object, m?: string): void; debug(o: object, m?: string): void };
}

/** A VM that ran at least this long before it exited is not crash-looping: restart it at once. */
const STABLE_RUN_MS = 30_000;

export class NodeReconciler {
  // VM operations mostly wait (spawn, QMP, fsync): many run at once. With 16, a wave of 33 VMs
  // on a node started in three rounds, the last ~1 s after the first; with 64 all start together.
  private readonly queue = new WorkQueue<string>({ baseDelayMs: 1000, maxDelayMs: 5 * 60_000, concurrency: 64 });
  private desired = new Map<string, DesiredVm>();
  private readonly located = new Map<string, Driver>(); // VMs found on a driver (incl. orphans)
  private launched = new Map<string, LaunchedVm>();
  private readonly acting = new Map<string, VmAction['kind']>();
  private readonly pulls = new Map<string, { bytes: number; total: number | null }>();
  private readonly ready = new Map<string, string>(); // vm -> launchId whose console matched
  private readonly watchers = new Map<string, { launchId: string; stop: AbortController }>();
  private readonly reports = new Map<string, ReportedVm>();
  private readonly errors = new Map<string, string>();
  private readonly lastObs = new Map<string, VmObservation>();
  private readonly fencedVms = new Set<string>();
  /** Whether each VM's image content was here at its last reconcile. */
  private readonly imagePresent = new Map<string, boolean>();
  /** Crash-looping VMs: how many quick exits in a row, and when the next start may happen. */
  private readonly crashes = new Map<string, { count: number; until: number }>();
  private timer: NodeJS.Timeout | undefined;
  private liveness: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly d: NodeReconcilerDeps) {}

  get formats(): string[] {
    return [...new Set(this.d.drivers.flatMap((x) => x.formats))].sort();
  }

  async start(): Promise<void> {
    this.launched = new Map(Object.entries(await this.d.ledger.load()));
    this.queue.start(
      (name) => this.reconcile(name),
      (name, err) => {
        const msg = (err as Error)?.message ?? String(err);
        this.errors.set(name, msg.split('\n')[0]!);
        this.d.log.warn({ vm: name, err: msg }, 'reconcile failed; retrying with backoff');
        this.d.event(name, { type: 'Warning', reason: 'Failed', message: msg.split('\n')[0]! });
        this.publish(name);
      },
    );
    await this.resync();
    this.timer = setInterval(() => void this.resync().catch((e: unknown) => this.d.log.warn({ err: e }, 'resync failed')), this.d.resyncMs ?? 10_000);
    this.timer.unref();
    // Between resyncs, a VM process that died or was removed behind our back is noticed within a
    // second (Kubernetes' PLEG relists every second): one signal-0 per running VM, no file I/O.
    this.liveness = setInterval(() => this.checkLiveness(), 1_000);
    this.liveness.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearInterval(this.liveness);
    this.queue.stop();
    for (const w of this.watchers.values()) w.stop.abort();
    this.watchers.clear();
    // VMs keep running: a restarted daemon adopts them (SPEC section 4).
  }

  private checkLiveness(): void {
    const alive = this.d.alive ?? pidExists;
    for (const [name, obs] of this.lastObs) {
      if (obs.state === 'running' && obs.pid && !this.acting.has(name) && !alive(obs.pid)) this.queue.add(name);
    }
  }

  /** Something outside desired state changed (fencing): look at every VM again. */
  kick(): void {
    if (this.stopped) return;
    this.refreshDesired();
    for (const name of this.allNames()) this.queue.add(name);
  }

  /**
   * Desired state changed: look again at the VMs whose desired state here did (new, changed,
   * gone). Every VM on every commit meant reading each VM's files hundreds of times a second
   * during a wave of placements; what else can change is covered by the resync.
   */
  desiredChanged(): void {
    if (this.stopped) return;
    const before = this.desired;
    this.refreshDesired();
    for (const [name, d] of this.desired) {
      const prev = before.get(name);
      if (!prev || JSON.stringify(prev) !== JSON.stringify(d)) this.queue.add(name);
    }
    for (const name of before.keys()) if (!this.desired.has(name)) this.queue.add(name);
  }

  report(name: string): ReportedVm | undefined {
    return this.reports.get(name);
  }

  /** The console of a VM on this node (`blixard logs`). */
  async consoleLog(name: string, opts: ConsoleLogOptions): Promise<Buffer> {
    const drv = this.located.get(name) ?? this.driverFor(name, this.desired.get(name));
    if (!drv) throw new Error(`VirtualMachine/${name} has never run on this node`);
    return drv.consoleLog(name, opts);
  }

  private async resync(): Promise<void> {
    this.refreshDesired();
    for (const drv of this.d.drivers) {
      for (const o of await drv.list()) if (o.state !== 'missing') this.located.set(o.name, drv);
    }
    for (const name of this.allNames()) this.queue.add(name);
  }

  private refreshDesired(): void {
    this.desired = new Map(desiredVmsFor(this.d.view(), this.d.nodeId).map((v) => [v.name, v]));
  }

  private allNames(): Set<string> {
    return new Set([...this.desired.keys(), ...this.located.keys(), ...this.launched.keys(), ...this.reports.keys()]);
  }

  private driverFor(name: string, desired: DesiredVm | undefined): Driver | undefined {
    const here = this.located.get(name);
    if (here && (!desired || here.formats.includes(desired.image.format))) return here;
    return desired ? this.d.drivers.find((x) => x.formats.includes(desired.image.format)) : here;
  }

  private async reconcile(name: string): Promise<{ requeueAfterMs?: number } | void> {
    const desired = this.desired.get(name);
    const drv = this.driverFor(name, desired);
    if (!drv) {
      if (desired) throw new Error(`no driver on this node runs format ${desired.image.format}`);
      this.forgetVm(name);
      return;
    }
    const obs = await drv.inspect(name);
    if (obs.state !== 'missing') this.located.set(name, drv);
    else if (!desired) {
      // Not wanted here and gone: nothing left to do, and nothing left to wait for (a name kept
      // in `located` would hold back every start on this node as "still leaving").
      this.forgetVm(name);
      return;
    }
    const observed = this.observed(name, obs);
    const hashes = [desired?.image.hash, desired?.image.initrdHash].filter((h): h is string => !!h);
    const present = new Set<string>();
    for (const h of hashes) if (await this.d.images.has(h)) present.add(h);
    this.imagePresent.set(name, present.size === hashes.length);
    let action = planVm(desired, observed, (h) => present.has(h));
    const gate = this.d.gate?.() ?? { fenced: false, mayStart: true };
    if (gate.fenced) {
      // Cut off: whatever the (possibly stale) desired state says, nothing runs here. The leader
      // will have moved these VMs by the time it declares this node lost.
      if (observed.state === 'running') {
        if (!this.fencedVms.has(name)) this.d.event(name, { type: 'Warning', reason: 'Fenced', message: `this node is cut off from the cluster (${gate.why ?? 'no contact'}): stopping the VM` });
        this.fencedVms.add(name);
        action = { kind: 'stop' };
      } else if (action.kind !== 'delete') action = { kind: 'none', why: 'fenced: cut off from the cluster' };
    } else if (['create', 'start', 'restart', 'recreate'].includes(action.kind)) {
      if (!gate.mayStart) return { requeueAfterMs: 500 };
      // A node coming back stops what it no longer owns before it starts anything.
      const leaving = [...this.located.keys()].filter((n) => !this.desired.has(n));
      if (leaving.length > 0 && !leaving.includes(name)) {
        for (const n of leaving) this.queue.add(n);
        return { requeueAfterMs: 200 };
      }
    }
    if (!gate.fenced) this.fencedVms.delete(name);

    // Crash loop: a VM that keeps exiting soon after it starts is restarted with growing delays
    // (Kubernetes' CrashLoopBackOff); one that ran for a while is restarted at once.
    if (action.kind === 'start' && observed.state === 'exited' && obs.startedAt && observed.exit) {
      const ran = Date.parse(observed.exit.at) - Date.parse(obs.startedAt);
      const c = this.crashes.get(name) ?? { count: 0, until: 0 };
      if (ran >= STABLE_RUN_MS) this.crashes.delete(name);
      else if (c.until === 0) {
        c.count++;
        const delay = c.count === 1 ? 0 : Math.min(5 * 60_000, 1000 * 2 ** (c.count - 2));
        c.until = Date.now() + delay;
        this.crashes.set(name, c);
        if (delay > 0) this.d.event(name, { type: 'Warning', reason: 'BackOff', message: `exited after ${(ran / 1000).toFixed(1)} s (${c.count} times in a row); restarting in ${Math.round(delay / 1000)} s` });
      }
      const wait = (this.crashes.get(name)?.until ?? 0) - Date.now();
      if (wait > 0) {
        this.publish(name, obs);
        return { requeueAfterMs: wait };
      }
      if (this.crashes.has(name)) this.crashes.get(name)!.until = 0; // the start below consumes it
    }

    if (action.kind === 'none') {
      this.queue.forget(name);
      this.errors.delete(name);
      if (observed.state === 'running' && obs.startedAt && Date.now() - Date.parse(obs.startedAt) >= STABLE_RUN_MS) this.crashes.delete(name);
      this.publish(name, obs);
      if (observed.state === 'running') this.watchReady(name, drv, obs, desired);
      return { requeueAfterMs: this.d.resyncMs ?? 10_000 };
    }

    this.acting.set(name, action.kind);
    this.publish(name, obs);
    try {
      await this.execute(name, action, desired, drv, obs);
      this.errors.delete(name);
    } finally {
      this.acting.delete(name);
      this.pulls.delete(name);
    }
    // A start looked at the VM again: report what it saw now (Running, once its console printed
    // the ready line, which may have come already). The next pass waits behind every other VM
    // of a wave in the queue, and reporting only then made a whole wave turn Running at once.
    if (this.lastObs.get(name) !== obs) this.publish(name);
    // Level-triggered: look again right away; the next pass finds the next step or nothing.
    this.queue.add(name);
  }

  private async execute(name: string, action: VmAction, desired: DesiredVm | undefined, drv: Driver, obs: VmObservation): Promise<void> {
    const grace = this.d.stopGraceMs ?? 30_000;
    switch (action.kind) {
      case 'pull': {
        if (!this.d.images.pull) throw new Error(`the content ${action.hashes.join(', ')} of Image/${desired!.image.name} is not on this node, and this node cannot fetch from peers`);
        this.d.event(name, { type: 'Normal', reason: 'Pulling', message: `fetching ${action.hashes.join(', ')}` });
        await this.d.images.pull(action.hashes, name, (bytes, total) => {
          this.pulls.set(name, { bytes, total });
          this.publish(name, obs);
        });
        this.d.event(name, { type: 'Normal', reason: 'Pulled', message: `fetched Image/${desired!.image.name}` });
        return;
      }
      case 'create':
        await this.create(name, desired!, drv);
        if (action.start) await this.startVm(name, drv, 'Started');
        return;
      case 'start':
        await this.startVm(name, drv, 'Started');
        return;
      case 'stop': {
        const r = await drv.stop(name, grace);
        this.unwatch(name);
        this.d.event(name, { type: r.outcome === 'forced' ? 'Warning' : 'Normal', reason: 'Stopped', message: r.outcome === 'forced' ? `forced off after the ${grace / 1000} s grace period` : `stopped in ${Math.round(r.elapsedMs)} ms` });
        return;
      }
      case 'restart':
        await this.create(name, desired!, drv);
        await drv.stop(name, grace);
        this.unwatch(name);
        await this.startVm(name, drv, 'Restarted');
        return;
      case 'recreate': {
        await drv.delete(name, grace);
        this.unwatch(name);
        this.located.delete(name);
        const target = this.driverFor(name, desired)!;
        await this.create(name, desired!, target);
        if (action.start) await this.startVm(name, target, 'Recreated');
        return;
      }
      case 'record':
        await this.create(name, desired!, drv);
        this.d.event(name, { type: 'Normal', reason: 'Updated', message: `generation ${desired!.generation} recorded in place` });
        return;
      case 'delete':
        await drv.delete(name, grace);
        this.d.event(name, { type: 'Normal', reason: 'Deleted', message: 'stopped and removed from this node' });
        this.forgetVm(name);
        return;
      case 'none':
        return;
    }
  }

  private async create(name: string, d: DesiredVm, drv: Driver): Promise<void> {
    const image: VmSpecForDriver['image'] = { format: d.image.format, path: await this.d.images.pathFor(d.image.hash!) };
    if (d.image.initrdHash) image.initrdPath = await this.d.images.pathFor(d.image.initrdHash);
    const launched: LaunchedVm = { uid: d.uid, generation: d.generation, spec: d.spec, image: { format: d.image.format, hash: d.image.hash, ...(d.image.initrdHash ? { initrdHash: d.image.initrdHash } : {}) } };
    const spec: VmSpecForDriver = {
      name,
      uid: d.uid,
      generation: d.generation,
      vcpus: d.spec.vcpus ?? 1,
      memoryMiB: d.spec.memoryMiB ?? 256,
      ports: (d.spec.ports ?? []).map((p) => ({ host: p.host, guest: p.guest, protocol: p.protocol ?? 'tcp' })),
      image,
      specHash: createHash('sha256').update(JSON.stringify(launched)).digest('hex').slice(0, 16),
    };
    if (d.spec.kernelArgs !== undefined) spec.kernelArgs = d.spec.kernelArgs;
    await drv.create(spec);
    this.located.set(name, drv);
    this.launched.set(name, launched);
    await this.saveLedger();
  }

  private async startVm(name: string, drv: Driver, reason: string): Promise<void> {
    await drv.start(name);
    const obs = await drv.inspect(name);
    this.lastObs.set(name, obs);
    this.d.event(name, { type: 'Normal', reason, message: `started on ${this.d.nodeName}${obs.pid ? ` (pid ${obs.pid})` : ''}` });
    this.watchReady(name, drv, obs, this.desired.get(name));
  }

  /** Follows the console of a running VM until its readyPattern matches (once per launch). */
  private watchReady(name: string, drv: Driver, obs: VmObservation, d: DesiredVm | undefined): void {
    const launchId = obs.launchId ?? obs.startedAt ?? '';
    if (!d || this.ready.get(name) === launchId || this.watchers.get(name)?.launchId === launchId) return;
    this.unwatch(name);
    if (!d.image.readyPattern) {
      this.ready.set(name, launchId);
      this.publish(name);
      return;
    }
    let re: RegExp;
    try {
      re = new RegExp(d.image.readyPattern);
    } catch {
      return;
    }
    const stop = new AbortController();
    this.watchers.set(name, { launchId, stop });
    let partial = '';
    const check = (chunk: Buffer) => {
      if (stop.signal.aborted) return; // the initial read and the follow may both carry the line
      const text = partial + chunk.toString('utf8');
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      if (lines.some((l) => re.test(l.replace(/\r$/, '')))) {
        this.ready.set(name, launchId);
        stop.abort();
        this.watchers.delete(name);
        this.d.event(name, { type: 'Normal', reason: 'Ready', message: `console printed /${d.image.readyPattern}/` });
        this.publish(name);
      }
    };
    drv.consoleLog(name, { follow: stop.signal, onData: check }).then(check, (e: unknown) => {
      if (!stop.signal.aborted) this.d.log.debug({ vm: name, err: (e as Error).message }, 'console follow ended');
    });
  }

  private unwatch(name: string): void {
    this.watchers.get(name)?.stop.abort();
    this.watchers.delete(name);
    this.ready.delete(name);
  }

  private observed(name: string, obs: VmObservation): ObservedVm {
    const o: ObservedVm = { state: obs.state };
    if (obs.exit) o.exit = obs.exit;
    const l = this.launched.get(name);
    // What the driver has is ours only if the uid matches what we recorded launching.
    if (l && obs.state !== 'missing' && obs.uid === l.uid) o.launched = l;
    return o;
  }

  private publish(name: string, obs?: VmObservation): void {
    const d = this.desired.get(name);
    if (!d) {
      if (this.reports.delete(name)) this.d.report(name, null);
      return;
    }
    if (obs) this.lastObs.set(name, obs);
    const last = obs ?? this.lastObs.get(name);
    const observed = last ? this.observed(name, last) : undefined;
    const err = this.errors.get(name);
    const ctx = {
      observed,
      ready: this.ready.has(name),
      ...(this.acting.has(name) ? { acting: this.acting.get(name)! } : {}),
      ...(this.pulls.has(name) ? { pull: this.pulls.get(name)! } : {}),
      ...(this.imagePresent.has(name) ? { imagePresent: this.imagePresent.get(name)! } : {}),
      ...(err ? { error: { message: err, count: this.queue.failuresOf(name) } } : {}),
    };
    const r = reportVm(d, this.d.nodeName, ctx);
    const prev = this.reports.get(name);
    const now = new Date().toISOString();
    const since: Record<string, string> = {};
    for (const c of r.conditions) {
      const before = prev?.conditions.find((x) => x.type === c.type);
      since[c.type] = before && before.status === c.status && prev?.since[c.type] ? prev.since[c.type]! : now;
    }
    const next: ReportedVm = {
      ...r,
      name,
      uid: d.uid,
      generation: d.generation,
      nodeId: this.d.nodeId,
      since,
      observedState: observed?.state ?? 'missing',
      ...(observed?.exit ? { lastExit: observed.exit } : {}),
    };
    if (prev && JSON.stringify({ ...prev, since: {} }) === JSON.stringify({ ...next, since: {} })) return;
    this.reports.set(name, next);
    this.d.report(name, next);
  }

  private forgetVm(name: string): void {
    this.unwatch(name);
    this.located.delete(name);
    if (this.launched.delete(name)) void this.saveLedger();
    this.queue.forget(name);
    this.errors.delete(name);
    this.lastObs.delete(name);
    this.imagePresent.delete(name);
    this.crashes.delete(name);
    if (this.reports.delete(name)) this.d.report(name, null);
  }

  /** Saves run one after another, each writing the latest ledger; callers that arrive while one
   * runs share the next (group commit: a wave of 1,000 creates is not 1,000 whole-ledger fsyncs). */
  private saving: Promise<void> = Promise.resolve();
  private nextSave: Promise<void> | null = null;
  private saveLedger(): Promise<void> {
    if (this.nextSave) return this.nextSave;
    const next = this.saving.catch(() => {}).then(() => {
      this.nextSave = null;
      return this.d.ledger.save(Object.fromEntries(this.launched));
    });
    this.nextSave = next;
    this.saving = next;
    return next;
  }
}
