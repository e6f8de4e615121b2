import { existsSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { VmSpecForDriver } from './driver.js';
import { exists, readJson, writeJsonAtomic } from './files.js';

// One VM's folder, `<root>/<name>/`, and the records in it. Who writes what:
//
//   spec.json     daemon, at create     the spec to start from (replaced by a create with a new spec)
//   launch.json   daemon, before spawn  what was launched: launch id, argv, spec hash, QMP socket
//   run.json      shim, after fork      shim and program pids with their start times, exec error
//   exit.json     shim, after waitpid   the program's wait status
//   stop.json     daemon, at stop       a stop was asked for (so the end is "stopped", not "exited")
//   console.log   QEMU serial / the program's stdout+stderr, one per launch (the previous one is
//                 kept as console.prev.log)
//   shim.log      the shim's own messages; qemu.log: QEMU's stderr
//
// Every record carries the launch id, so a record left from an earlier launch is never read as
// describing the current one. All are written atomically (temp file + rename).

export const FILES = {
  spec: 'spec.json',
  launch: 'launch.json',
  run: 'run.json',
  exit: 'exit.json',
  stop: 'stop.json',
  console: 'console.log',
  consolePrev: 'console.prev.log',
  shim: 'shim.pl',
  shimLog: 'shim.log',
} as const;

const portSchema = z.object({ host: z.number().int(), guest: z.number().int(), protocol: z.enum(['tcp', 'udp']) });
export const specSchema = z.object({
  name: z.string(),
  uid: z.string(),
  generation: z.number(),
  vcpus: z.number(),
  memoryMiB: z.number(),
  kernelArgs: z.string().optional(),
  ports: z.array(portSchema),
  image: z.object({ format: z.enum(['kernel', 'raw', 'qcow2', 'executable']), path: z.string(), initrdPath: z.string().optional() }),
  specHash: z.string(),
}) satisfies z.ZodType<VmSpecForDriver>;

const specRecord = z.object({ driver: z.enum(['qemu', 'process']), createdAt: z.string(), spec: specSchema });
export type SpecRecord = z.infer<typeof specRecord>;

const launchRecord = z.object({
  launchId: z.string(),
  driver: z.enum(['qemu', 'process']),
  uid: z.string(),
  generation: z.number(),
  specHash: z.string(),
  argv: z.array(z.string()),
  launchedAt: z.string(),
  qmpSocket: z.string().optional(),
  accel: z.string().optional(),
});
export type LaunchRecord = z.infer<typeof launchRecord>;

const runRecord = z.object({
  launchId: z.string(),
  bootId: z.string(),
  shimPid: z.number().int(),
  shimStartTicks: z.number(),
  pid: z.number().int(),
  startTicks: z.number(),
  execError: z.string().optional(),
});
export type RunRecord = z.infer<typeof runRecord>;

const exitRecord = z.object({
  launchId: z.string(),
  pid: z.number().int(),
  /** The raw wait status; code and signal are decoded from it by the shim. */
  status: z.number().int(),
  code: z.number().int().nullable(),
  signal: z.number().int().nullable(),
  core: z.boolean(),
  time: z.number(), // epoch seconds (the shim has no sub-second clock); see exitAt
});
export type ExitRecord = z.infer<typeof exitRecord>;

const stopRecord = z.object({ launchId: z.string(), requestedAt: z.string(), graceMs: z.number(), forcedAt: z.string().optional() });
export type StopRecord = z.infer<typeof stopRecord>;

export class VmFolder {
  readonly dir: string;
  constructor(
    root: string,
    readonly name: string,
  ) {
    this.dir = path.join(root, name);
  }

  file(name: string): string {
    return path.join(this.dir, name);
  }

  exists(): Promise<boolean> {
    return exists(this.dir);
  }

  readSpec(): Promise<SpecRecord | null> {
    return readJson(this.file(FILES.spec), specRecord);
  }
  writeSpec(rec: SpecRecord): Promise<void> {
    return writeJsonAtomic(this.file(FILES.spec), rec, { sync: 'data' });
  }

  readLaunch(): Promise<LaunchRecord | null> {
    return readJson(this.file(FILES.launch), launchRecord);
  }
  writeLaunch(rec: LaunchRecord): Promise<void> {
    return writeJsonAtomic(this.file(FILES.launch), rec, { sync: 'data' });
  }

  /** The shim's records, only when they belong to the given launch. */
  async readRun(launchId: string): Promise<RunRecord | null> {
    const r = await readJson(this.file(FILES.run), runRecord);
    return r?.launchId === launchId ? r : null;
  }
  async readExit(launchId: string): Promise<ExitRecord | null> {
    const r = await readJson(this.file(FILES.exit), exitRecord);
    return r?.launchId === launchId ? r : null;
  }

  async readStop(launchId: string): Promise<StopRecord | null> {
    const r = await readJson(this.file(FILES.stop), stopRecord);
    return r?.launchId === launchId ? r : null;
  }
  writeStop(rec: StopRecord): Promise<void> {
    return writeJsonAtomic(this.file(FILES.stop), rec);
  }

  /** Clears the previous launch's records and rotates its console, before a new launch. Mostly
   * there is nothing to clear (a new VM): asking first spares a failed call's exception. */
  async resetForLaunch(): Promise<void> {
    for (const f of [FILES.run, FILES.exit, FILES.stop]) if (existsSync(this.file(f))) rmSync(this.file(f), { force: true });
    try {
      if (existsSync(this.file(FILES.console))) renameSync(this.file(FILES.console), this.file(FILES.consolePrev));
    } catch {
      // gone meanwhile: nothing to rotate
    }
  }
}
