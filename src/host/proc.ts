import { readFileSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { constants } from 'node:os';

// What /proc says about a process. A pid alone does not identify a process: the kernel reuses
// pids. (boot id, pid, start time in clock ticks since boot) does, so that triple is what the
// shim records and what every liveness check compares.

export interface ProcStat {
  pid: number;
  comm: string;
  /** R, S, D, Z (zombie), T, ... */
  state: string;
  ppid: number;
  pgrp: number;
  session: number;
  /** Field 22: start time in clock ticks after boot. Never changes for a process, not even at exec. */
  startTicks: number;
}

export interface ProcessIdentity {
  pid: number;
  startTicks: number;
  bootId: string;
}

/**
 * Whether some process has this pid (signal 0; EPERM means it exists but is not ours). Cheap, but
 * a pid alone may have been reused: isAlive compares the full identity.
 */
export function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Parses /proc/<pid>/stat; null when there is no such process. */
export async function readProcStat(pid: number): Promise<ProcStat | null> {
  let text: string;
  try {
    // In memory, a few hundred bytes, asked for every VM at every look: not worth the promise API.
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  return parseProcStat(text);
}

export function parseProcStat(text: string): ProcStat | null {
  // comm may hold spaces and parentheses: it runs from the first '(' to the LAST ')'.
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  const rest = text.slice(close + 2).split(' ');
  const num = (i: number): number => Number(rest[i]);
  const stat: ProcStat = {
    pid: Number(text.slice(0, open).trim()),
    comm: text.slice(open + 1, close),
    state: rest[0] ?? '?',
    ppid: num(1),
    pgrp: num(2),
    session: num(3),
    startTicks: num(19),
  };
  return Number.isFinite(stat.pid) && Number.isFinite(stat.startTicks) ? stat : null;
}

let bootIdCache: string | undefined;
/** Changes at every boot: a record from before a reboot describes processes that are gone. */
export async function bootId(): Promise<string> {
  bootIdCache ??= (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
  return bootIdCache;
}

/** True when the identified process still exists and is not a zombie (a zombie has ended; only
 * its parent has not collected the status yet). */
export async function isAlive(id: ProcessIdentity): Promise<boolean> {
  if (id.bootId !== (await bootId())) return false;
  const st = await readProcStat(id.pid);
  return st !== null && st.startTicks === id.startTicks && st.state !== 'Z' && st.state !== 'X';
}

/** Every process on the machine. Reads at most 64 stat files at a time (a busy node has
 * thousands of processes; reading them all at once runs out of file descriptors). */
async function allProcStats(): Promise<ProcStat[]> {
  const pids = (await readdir('/proc')).filter((d) => /^\d+$/.test(d)).map(Number);
  const out: ProcStat[] = [];
  for (let i = 0; i < pids.length; i += 64) {
    for (const st of await Promise.all(pids.slice(i, i + 64).map(readProcStat))) if (st) out.push(st);
  }
  return out;
}

let inFlight: Promise<ProcStat[]> | null = null;
let next: Promise<ProcStat[]> | null = null;

/**
 * The process table from a scan that started after this call, so whatever ran when the caller
 * asked is in it. Concurrent callers share scans (deleting 1,000 VMs must not read /proc 1,000
 * times): a caller arriving while a scan runs waits for the next one, which serves every caller
 * queued meanwhile. Still a snapshot: re-check a process before acting on it.
 */
export function freshProcStats(): Promise<ProcStat[]> {
  if (!inFlight) return scan();
  next ??= inFlight.then(scan, scan);
  return next;
}

function scan(): Promise<ProcStat[]> {
  next = null;
  const p = allProcStats();
  inFlight = p;
  const done = (): void => {
    if (inFlight === p) inFlight = null;
  };
  p.then(done, done);
  return p;
}

/** Sends a signal; false when the target no longer exists. */
export function sendSignal(target: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(target, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

const SIGNAL_NAMES = new Map<number, string>(Object.entries(constants.signals).map(([name, n]) => [n, name]));
export function signalName(n: number): string {
  return SIGNAL_NAMES.get(n) ?? `SIG${n}`;
}
