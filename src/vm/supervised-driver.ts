import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import {
  assertVmName,
  VmDriverError,
  type ConsoleLogOptions,
  type Driver,
  type DriverName,
  type ImageFormat,
  type StopResult,
  type VmExit,
  type VmObservation,
  type VmSpecForDriver,
} from './driver.js';
import { followFile, readTail } from './files.js';
import type { HostTools } from './host-tools.js';
import { KeyedLock } from './keyed-lock.js';
import { signalName } from '../host/index.js';
import {
  exitTime,
  killShim,
  launch,
  observe,
  signalProgram,
  waitForEnd,
  waitForShim,
  type LaunchPlan,
  type Supervision,
} from './supervise.js';
import { FILES, VmFolder, type ExitRecord, type LaunchRecord, type RunRecord } from './vm-folder.js';

// What both drivers share: the VM folder life cycle, the shim, the stop escalation, adoption.
// A driver supplies the hypervisor-specific steps (template methods below).

/** How long after a launch a missing run.json still means "starting" rather than "interrupted". */
const LAUNCH_GRACE_MS = 30_000;
/** After the force step (QMP quit / SIGKILL of the group): how long before a last SIGKILL. */
const FORCE_WAIT_MS = 5_000;

export abstract class SupervisedDriver implements Driver {
  abstract readonly name: DriverName;
  abstract readonly formats: readonly ImageFormat[];
  /** One operation (create, start, stop, delete) at a time per VM. */
  private readonly ops = new KeyedLock();

  constructor(readonly root: string) {}

  /** The programs this driver needs on the machine: what available() checks. */
  protected abstract readonly tools: HostTools<unknown>;

  available(): Promise<{ ok: boolean; why?: string }> {
    return this.tools.available();
  }

  /** Driver-specific preparation of the folder at create (overlay, copy of the executable).
   * `running`: the current launch is alive, so files it uses must not be replaced. */
  protected abstract prepare(folder: VmFolder, spec: VmSpecForDriver, previous: VmSpecForDriver | null, running: boolean): Promise<void>;
  /** The command line and environment to launch. */
  protected abstract plan(folder: VmFolder, spec: VmSpecForDriver): Promise<LaunchPlan>;
  /** Returns once the launched VM is usable (QEMU: QMP answers); throws if it is not. */
  protected abstract awaitLaunched(folder: VmFolder, launch: LaunchRecord, run: RunRecord): Promise<void>;
  /** For a live process: is the VM really running? */
  protected abstract probe(folder: VmFolder, launch: LaunchRecord, run: RunRecord): Promise<{ state: 'running' | 'unknown'; detail?: string }>;
  /** The graceful step: ACPI powerdown, SIGTERM. */
  protected abstract askToStop(folder: VmFolder, launch: LaunchRecord, run: RunRecord): Promise<void>;
  /** The forceful step: QMP quit, SIGKILL. */
  protected abstract forceStop(folder: VmFolder, launch: LaunchRecord, run: RunRecord): Promise<void>;
  /** At delete, after the program and its shim have ended: remove what may outlive them. */
  protected async cleanupAfterEnd(_folder: VmFolder, _run: RunRecord): Promise<void> {}

  protected folder(name: string): VmFolder {
    assertVmName(name);
    return new VmFolder(this.root, name);
  }

  /** Runs an operation under the VM's lock; any error comes out naming the VM and the action. */
  private op<T>(name: string, action: string, fn: () => Promise<T>): Promise<T> {
    return this.ops.run(name, async () => {
      try {
        return await fn();
      } catch (err) {
        if (err instanceof VmDriverError) throw err;
        throw new VmDriverError(name, action, (err as Error).message);
      }
    });
  }

  async create(given: VmSpecForDriver): Promise<void> {
    const folder = this.folder(given.name);
    checkSpec(this, given);
    // Stored absolute: the VM's process runs in its folder, not in the daemon's directory.
    const { initrdPath, ...image } = given.image;
    const spec: VmSpecForDriver = { ...given, image: { ...image, path: path.resolve(image.path), ...(initrdPath ? { initrdPath: path.resolve(initrdPath) } : {}) } };
    await this.op(spec.name, 'create', async () => {
      await mkdir(folder.dir, { recursive: true, mode: 0o700 });
      const prev = await folder.readSpec();
      if (prev && prev.spec.uid !== spec.uid) throw new VmDriverError(spec.name, 'create', `a VM of this name with uid ${prev.spec.uid} exists; delete it first`);
      const running = (await observe(folder, 0)).alive;
      await this.prepare(folder, spec, prev?.spec ?? null, running);
      await folder.writeSpec({ driver: this.name, createdAt: prev?.createdAt ?? new Date().toISOString(), spec });
    });
  }

  async start(name: string): Promise<void> {
    const folder = this.folder(name);
    await this.op(name, 'start', async () => {
      const rec = await folder.readSpec();
      if (!rec) throw new VmDriverError(name, 'start', 'not created (no spec.json)');
      const sup = await observe(folder);
      if (sup.alive) return; // already running, maybe started by a previous daemon: adopt, never start a second copy
      // The last launch's shim may still be finishing its records: the new launch must not race it.
      if (sup.run && sup.shimAlive && !(await waitForShim(sup.run, FORCE_WAIT_MS))) await killShim(sup.run);
      const { launch: l, run } = await launch(folder, await this.plan(folder, rec.spec));
      try {
        await this.awaitLaunched(folder, l, run);
      } catch (err) {
        await signalProgram(run, 'SIGKILL', true); // a launch that never became usable is not left behind
        await waitForEnd(run, FORCE_WAIT_MS);
        throw err;
      }
    });
  }

  stop(name: string, graceMs: number): Promise<StopResult> {
    const folder = this.folder(name);
    return this.op(name, 'stop', () => this.stopLocked(folder, graceMs));
  }

  private async stopLocked(folder: VmFolder, graceMs: number): Promise<StopResult> {
    const t0 = Date.now();
    const sup = await observe(folder);
    const { launch: l, run } = sup;
    if (!l || !run) return { outcome: 'not-running', elapsedMs: Date.now() - t0 };
    // Recorded even when it already ended by itself: from now on it is "stopped", as asked.
    if (!sup.stop) await folder.writeStop({ launchId: l.launchId, requestedAt: new Date().toISOString(), graceMs });
    if (!sup.alive) return { outcome: 'not-running', elapsedMs: Date.now() - t0, ...(await this.exitOf(folder, sup)) };

    let ended = false;
    if (graceMs > 0) {
      try {
        await this.askToStop(folder, l, run);
        ended = await waitForEnd(run, Math.max(0, graceMs - (Date.now() - t0)));
      } catch {
        // could not even ask (e.g. QMP does not answer): go on to force
      }
    }
    if (!ended) {
      await folder.writeStop({ launchId: l.launchId, requestedAt: sup.stop?.requestedAt ?? new Date(t0).toISOString(), graceMs, forcedAt: new Date().toISOString() });
      try {
        await this.forceStop(folder, l, run);
      } catch {
        // the SIGKILL below is the last resort
      }
      if (!(await waitForEnd(run, FORCE_WAIT_MS))) {
        await signalProgram(run, 'SIGKILL', true);
        if (!(await waitForEnd(run, FORCE_WAIT_MS))) throw new VmDriverError(folder.name, 'stop', `pid ${run.pid} is still alive after SIGKILL`);
      }
    }
    const after = await observe(folder);
    return { outcome: ended ? 'graceful' : 'forced', elapsedMs: Date.now() - t0, ...(await this.exitOf(folder, after)) };
  }

  async delete(name: string, graceMs = 0): Promise<void> {
    const folder = this.folder(name);
    await this.op(name, 'delete', async () => {
      if (!(await folder.exists())) return;
      const sup = await observe(folder, 0);
      if (sup.alive) await this.stopLocked(folder, graceMs);
      if (sup.run) {
        // The shim writes exit.json into the folder: let it finish before removing the folder.
        if (!(await waitForShim(sup.run, FORCE_WAIT_MS))) await killShim(sup.run);
        await this.cleanupAfterEnd(folder, sup.run);
      }
      await rm(folder.dir, { recursive: true, force: true, maxRetries: 3 });
      if (await folder.exists()) throw new VmDriverError(name, 'delete', `${folder.dir} is still there`);
    });
  }

  async inspect(name: string): Promise<VmObservation> {
    const folder = this.folder(name);
    try {
      return await this.observeVm(folder);
    } catch (err) {
      // One unreadable VM must not hide the others from list().
      return { name, uid: '', state: 'unknown', driver: this.name, detail: `cannot read its records: ${(err as Error).message}` };
    }
  }

  private async observeVm(folder: VmFolder): Promise<VmObservation> {
    const name = folder.name;
    if (!(await folder.exists())) return { name, uid: '', state: 'missing', driver: this.name };
    const rec = await folder.readSpec();
    if (!rec) return { name, uid: '', state: 'unknown', driver: this.name, detail: 'folder without spec.json (an interrupted create or delete)' };
    const sup = await observe(folder);
    const { launch: l, run } = sup;
    const base: VmObservation = { name, uid: rec.spec.uid, state: 'unknown', driver: this.name, specHash: l?.specHash ?? rec.spec.specHash, generation: l?.generation ?? rec.spec.generation };
    if (!l) return { ...base, state: 'stopped', detail: 'created, never started' };
    base.launchId = l.launchId;
    base.startedAt = l.launchedAt;
    if (!run) {
      if (Date.now() - Date.parse(l.launchedAt) < LAUNCH_GRACE_MS) return { ...base, state: 'unknown', detail: 'starting' };
      return { ...base, state: sup.stop ? 'stopped' : 'exited', detail: 'the launch was interrupted before the shim recorded a pid' };
    }
    base.pid = run.pid;
    if (sup.alive) {
      const p = await this.probe(folder, l, run);
      const shimGone = sup.shimAlive ? undefined : 'its shim is gone (killed?): how it ends will not be recorded';
      const detail = [p.detail, shimGone].filter((d): d is string => !!d).join('; ');
      return { ...base, state: p.state, ...(detail ? { detail } : {}) };
    }
    const ended = await this.exitOf(folder, sup);
    const detail = run.execError ?? (ended.exit ? undefined : 'ended while its shim was gone: exit status unknown');
    return { ...base, state: sup.stop ? 'stopped' : 'exited', ...ended, ...(detail ? { detail } : {}) };
  }

  async list(): Promise<VmObservation[]> {
    let names: string[];
    try {
      names = (await readdir(this.root, { withFileTypes: true })).filter((e) => e.isDirectory() && isVmName(e.name)).map((e) => e.name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    return mapLimit(names.sort(), 16, (n) => this.inspect(n));
  }

  async consoleLog(name: string, opts: ConsoleLogOptions = {}): Promise<Buffer> {
    const file = this.folder(name).file(FILES.console);
    const { data, end } = await readTail(file, opts.tailBytes);
    if (opts.follow) {
      const onData = opts.onData ?? (() => {});
      if (data.length > 0) onData(data);
      await followFile(file, end, opts.follow, onData);
    }
    return data;
  }

  private async exitOf(folder: VmFolder, sup: Supervision): Promise<{ exit?: VmExit }> {
    return sup.exit ? { exit: await toVmExit(folder, sup.exit) } : {};
  }
}

async function toVmExit(folder: VmFolder, e: ExitRecord): Promise<VmExit> {
  return { code: e.code, signal: e.signal === null ? null : signalName(e.signal), at: await exitTime(folder, e) };
}

function isVmName(n: string): boolean {
  try {
    assertVmName(n);
    return true;
  } catch {
    return false;
  }
}

function checkSpec(d: Driver, s: VmSpecForDriver): void {
  const bad = (msg: string): never => {
    throw new VmDriverError(s.name, 'create', msg);
  };
  if (!d.formats.includes(s.image.format)) bad(`the ${d.name} driver runs ${d.formats.join(', ')} images, not ${s.image.format}`);
  if (!Number.isInteger(s.vcpus) || s.vcpus < 1) bad(`vcpus: expected a positive integer, got ${s.vcpus}`);
  if (!Number.isInteger(s.memoryMiB) || s.memoryMiB < 1) bad(`memoryMiB: expected a positive integer, got ${s.memoryMiB}`);
  for (const p of s.ports) {
    for (const n of [p.host, p.guest]) if (!Number.isInteger(n) || n < 1 || n > 65535) bad(`ports: expected port numbers 1-65535, got ${JSON.stringify(p)}`);
  }
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
