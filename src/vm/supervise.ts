import { randomUUID } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { VmDriverError } from './driver.js';
import { writeFileAtomic } from '../storage/index.js';
import { pollUntil, textTail } from './files.js';
import { Launcher } from './launcher.js';
import { freshProcStats, isAlive, pidExists, readProcStat, sendSignal, type ProcessIdentity, type ProcStat } from '../host/index.js';
import { SHIM_SOURCE } from './shim.js';
import { FILES, type ExitRecord, type LaunchRecord, type RunRecord, type StopRecord, type VmFolder } from './vm-folder.js';

// Starting a VM's process through the shim, and finding out, from the records and /proc alone,
// whether it still runs and how it ended. Shared by both drivers.

/**
 * The daemon's dead man's switch, `<data-dir>/vms/heartbeat` (beside the drivers' roots): the
 * daemon rewrites it every second with the seconds its VMs may outlive it (0: forever); every
 * shim checks it and stops its VM once the daemon has been silent for longer (shim.ts).
 */
export const FENCE_FILE = 'heartbeat';

/** PATH for what VMs run: the system's, never the daemon's (which may point into a checkout). */
export const SAFE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** 16 hex digits, new for every launch. randomUUID draws from a pool Node refills in bulk:
 * ~0.8 us a call against ~11 us for randomBytes(8) (measured). */
function launchId(): string {
  return randomUUID().replace(/-/g, '').slice(0, 16);
}

export interface LaunchPlan {
  perl: string;
  /** The program and its arguments; relative paths are relative to the VM folder. */
  argv: string[];
  /** The whole environment of the program (nothing of the daemon's leaks through). */
  env: Record<string, string>;
  /** File in the VM folder for the program's stdout and stderr. */
  output: string;
  /** Resource limits the shim sets on the program: [RLIMIT_* number, soft, hard], via system call `syscall` (prlimit64). */
  rlimits?: { syscall: number; limits: [number, number, number][] };
  record: Pick<LaunchRecord, 'driver' | 'uid' | 'generation' | 'specHash' | 'qmpSocket' | 'accel'>;
  timeoutMs: number;
}

/** Spawns the shim detached and returns once it has recorded the program's pid. Throws, with
 * the output's tail, when the program could not be executed. */
export async function launch(folder: VmFolder, plan: LaunchPlan): Promise<{ launch: LaunchRecord; run: RunRecord }> {
  await folder.resetForLaunch();
  const rec: LaunchRecord = { ...plan.record, launchId: launchId(), argv: plan.argv, launchedAt: new Date().toISOString() };
  await folder.writeLaunch(rec);

  let spawnError: Error | null = null;
  let shimPid: number | null = null;
  try {
    // The shim runs as this daemon compiled it into its launcher (an upgrade's new shim serves
    // the next launch); the copy beside the VM folders is for reading, and running by hand.
    const shim = path.join(path.dirname(folder.dir), FILES.shim);
    await shimCopy(shim).catch(() => {}); // not needed to run: the next launch tries again
    const launcher = launcherFor(plan.perl);
    launcher.define(shim, SHIM_SOURCE);
    // Its own session (setsid), so the shim and the VM outlive the daemon and its terminal.
    const shimOptions = ['--fence', path.join(path.dirname(path.dirname(folder.dir)), FENCE_FILE), ...rlimitOptions(plan.rlimits)];
    shimPid = await launcher.launch({ cwd: folder.dir, output: folder.file(FILES.shimLog), argv: [shim, ...shimOptions, rec.launchId, plan.output, '--', ...plan.argv], env: plan.env, perlScript: true });
  } catch (e) {
    spawnError = e as Error;
  }
  const shimEnded = () => shimPid !== null && !pidExists(shimPid);

  const run = await pollUntil(async () => {
    const r = await folder.readRun(rec.launchId);
    if (r) return r;
    if (spawnError) throw new VmDriverError(folder.name, 'start', `cannot run the shim (${plan.perl}): ${spawnError.message}`);
    if (shimEnded() && !(await folder.readRun(rec.launchId))) throw new VmDriverError(folder.name, 'start', 'the shim ended before recording a pid', await textTail(folder.file(FILES.shimLog)));
    return undefined;
  }, plan.timeoutMs);
  if (!run) throw new VmDriverError(folder.name, 'start', `the shim recorded no pid within ${plan.timeoutMs} ms`, await textTail(folder.file(FILES.shimLog)));
  if (run.execError) throw new VmDriverError(folder.name, 'start', run.execError, await textTail(folder.file(plan.output)));
  return { launch: rec, run };
}

/** The shim's options that make it set these limits on its program (shim.ts). */
export function rlimitOptions(rlimits: LaunchPlan['rlimits']): string[] {
  if (!rlimits) return [];
  return ['--rlimit-syscall', String(rlimits.syscall), ...rlimits.limits.flatMap(([r, soft, hard]) => ['--rlimit', `${r}=${soft}:${hard}`])];
}

// Written once per driver root and daemon, when it differs from this daemon's shim (it was once
// a copy in every VM folder: a file created per VM start).
const shimCopies = new Map<string, Promise<void>>();
function shimCopy(file: string): Promise<void> {
  let p = shimCopies.get(file);
  if (!p) {
    p = (async () => {
      if ((await readFile(file, 'utf8').catch(() => '')) !== SHIM_SOURCE) await writeFileAtomic(file, SHIM_SOURCE);
    })();
    p.catch(() => shimCopies.delete(file)); // tried again by the next launch
    shimCopies.set(file, p);
  }
  return p;
}

const launchers = new Map<string, Launcher>();
function launcherFor(perl: string): Launcher {
  let l = launchers.get(perl);
  if (!l) launchers.set(perl, (l = new Launcher(perl)));
  return l;
}

export interface Supervision {
  launch: LaunchRecord | null;
  run: RunRecord | null;
  exit: ExitRecord | null;
  stop: StopRecord | null;
  /** The program of the current launch is alive (same boot, pid and start time). */
  alive: boolean;
  shimAlive: boolean;
}

export const programOf = (run: RunRecord): ProcessIdentity => ({ pid: run.pid, startTicks: run.startTicks, bootId: run.bootId });
export const shimOf = (run: RunRecord): ProcessIdentity => ({ pid: run.shimPid, startTicks: run.shimStartTicks, bootId: run.bootId });

/** Reads the records of the current launch and checks /proc. When the program has just ended
 * and its shim is still alive, waits (briefly) for the shim to record the exit status. */
export async function observe(folder: VmFolder, exitWaitMs = 2000): Promise<Supervision> {
  const launchRec = await folder.readLaunch();
  if (!launchRec) return { launch: null, run: null, exit: null, stop: null, alive: false, shimAlive: false };
  const id = launchRec.launchId;
  const run = await folder.readRun(id);
  const alive = run ? await isAlive(programOf(run)) : false;
  const shimAlive = run ? await isAlive(shimOf(run)) : false;
  let exit = await folder.readExit(id);
  if (run && !alive && !exit && shimAlive) exit = (await pollUntil(async () => (await folder.readExit(id)) ?? undefined, exitWaitMs)) ?? null;
  return { launch: launchRec, run, exit, stop: await folder.readStop(id), alive, shimAlive };
}

/** Waits until the program has ended; false if it still runs after timeoutMs. */
export async function waitForEnd(run: RunRecord, timeoutMs: number): Promise<boolean> {
  return (await pollUntil(async () => ((await isAlive(programOf(run))) ? undefined : true), timeoutMs, 25)) ?? false;
}

/** Waits until the shim has ended (it writes exit.json, then exits). */
export async function waitForShim(run: RunRecord, timeoutMs: number): Promise<boolean> {
  return (await pollUntil(async () => ((await isAlive(shimOf(run))) ? undefined : true), timeoutMs, 25)) ?? false;
}

/** Signals the program's process group (the shim made the program its leader), but only after
 * checking that the pid is still that program: a reused pid is never signalled. */
export async function signalProgram(run: RunRecord, signal: NodeJS.Signals, group: boolean): Promise<boolean> {
  if (!(await isAlive(programOf(run)))) return false;
  const st = await readProcStat(run.pid);
  return sendSignal(group && st?.pgrp === run.pid ? -run.pid : run.pid, signal);
}

export async function killShim(run: RunRecord): Promise<void> {
  if (await isAlive(shimOf(run))) sendSignal(run.shimPid, 'SIGKILL');
}

/**
 * SIGKILLs whatever is left of the launch's session (the shim is its leader): children that
 * outlived the program or left its process group. A session id stays reserved while any member
 * lives, so the session is ours when the shim is alive, or when no process holds its pid at all;
 * members must also be younger than the shim. Candidates come from a process table scanned
 * after this call (shared with concurrent deletes) and are each re-read just before the kill,
 * so a pid that changed hands since is never signalled. Returns how many processes were killed.
 */
export async function killSessionLeftovers(run: RunRecord): Promise<number> {
  const holder = await readProcStat(run.shimPid);
  if (holder && holder.startTicks !== run.shimStartTicks) return 0; // the pid is another process now
  const ours = (p: ProcStat | null): p is ProcStat => !!p && p.session === run.shimPid && p.pid !== run.shimPid && p.startTicks >= run.shimStartTicks && p.state !== 'Z';
  let killed = 0;
  for (const candidate of (await freshProcStats()).filter(ours)) {
    const now = await readProcStat(candidate.pid);
    if (ours(now) && now.startTicks === candidate.startTicks && sendSignal(now.pid, 'SIGKILL')) killed++;
  }
  return killed;
}

/** When the exit happened: exit.json's mtime (the shim writes it right after waitpid; Perl's
 * core has no sub-second clock), else the second the shim recorded. */
export async function exitTime(folder: VmFolder, exit: ExitRecord): Promise<string> {
  try {
    return (await stat(folder.file(FILES.exit))).mtime.toISOString();
  } catch {
    return new Date(exit.time * 1000).toISOString();
  }
}
