import { constants as fsc } from 'node:fs';
import { chmod, copyFile, rename } from 'node:fs/promises';
import { VmDriverError, type ImageFormat, type VmSpecForDriver } from './driver.js';
import { HostTools, requireExecutable } from './host-tools.js';
import { killSessionLeftovers, SAFE_PATH, signalProgram, type LaunchPlan } from './supervise.js';
import { SupervisedDriver } from './supervised-driver.js';
import { FILES, type RunRecord, type VmFolder } from './vm-folder.js';

// Runs an `executable` image as a supervised local process, like Nomad's exec driver, for
// machines with no hypervisor. The process runs in the VM's folder (its working directory),
// with stdout and stderr appended to console.log and a clean environment:
//   PATH, HOME (the folder), BLIXARD_VM_NAME, BLIXARD_VM_UID, BLIXARD_VM_GENERATION,
//   BLIXARD_KERNEL_ARGS (when the spec has kernelArgs), PORT_<guest>=<host> per port
//   (PORT_<guest>_UDP for a udp port whose number is also mapped for tcp).
// Nothing of the daemon's environment (its token, for one) leaks into it.
//
// The image is COPIED into the folder (as `./<vm name>`, mode 0555), never run from the store:
// running it in place would need the store's file to be executable (a chmod of the store) and
// would let a VM that writes to its own executable corrupt a blob other VMs share. A hard link
// has both problems (same inode). The copy uses a reflink where the filesystem offers one.
//
// Like execvp, a file the kernel cannot execute (no #!, not ELF) is handed to /bin/sh; it then
// fails with the shell's complaint in console.log and exit code 127 or 2.
//
// Limits, honestly:
// - memoryMiB is enforced as RLIMIT_DATA (soft = hard, set by the shim): private writable memory
//   (heap, anonymous mmaps) per process; allocations past it fail. It is per process, inherited
//   by children (each gets its own allowance), and it is not a limit on resident memory of the
//   group. RLIMIT_AS was rejected: runtimes that reserve address space (Node, the JVM, Go) do not
//   even start under an address-space limit of a few hundred MiB.
// - core dumps are disabled (RLIMIT_CORE = 0): they would land in the VM folder.
// - vcpus is NOT enforced (no cgroup here); it only counts against the node's capacity.
// - stop sends SIGTERM to the program's process group, then SIGKILL after the grace period;
//   delete also SIGKILLs anything left in the launch's session (children that changed group).

/** RLIMIT_* numbers (the same on every Linux architecture Node runs on but MIPS and SPARC). */
const RLIMIT_DATA = 2;
const RLIMIT_CORE = 4;

/**
 * The prlimit64 system call by Node's process.arch: the shim sets the limits itself through it.
 * Elsewhere prlimit(1) (util-linux) runs in between, as it did everywhere before.
 */
const PRLIMIT64: Partial<Record<string, number>> = { x64: 302, arm64: 261, riscv64: 261, loong64: 261 };

export function prlimitSyscall(): number | undefined {
  return PRLIMIT64[process.arch];
}

/**
 * `program` (in the VM folder) limited to `memoryMiB` of data and no core dumps: through the
 * shim (`syscall`, the prlimit64 number) or, without one, through `prlimit` (the tool's path).
 */
export function limitedProgram(program: string, memoryMiB: number, how: { syscall: number } | { prlimit: string }): Pick<LaunchPlan, 'argv' | 'rlimits'> {
  const data = memoryMiB * 1024 * 1024;
  return 'syscall' in how
    ? { argv: [program], rlimits: { syscall: how.syscall, limits: [[RLIMIT_DATA, data, data], [RLIMIT_CORE, 0, 0]] } }
    : { argv: [how.prlimit, `--data=${data}:${data}`, '--core=0:0', '--', program] };
}

export interface ProcessDriverOptions {
  /** `<data-dir>/vms/process` */
  root: string;
  perl?: string;
  prlimit?: string;
  startTimeoutMs?: number;
}

/** The environment a process VM sees. */
export function processEnv(spec: VmSpecForDriver, dir: string): Record<string, string> {
  const env: Record<string, string> = {
    PATH: SAFE_PATH,
    HOME: dir,
    BLIXARD_VM_NAME: spec.name,
    BLIXARD_VM_UID: spec.uid,
    BLIXARD_VM_GENERATION: String(spec.generation),
  };
  if (spec.kernelArgs) env.BLIXARD_KERNEL_ARGS = spec.kernelArgs;
  for (const p of [...spec.ports].sort((a, b) => (a.protocol === b.protocol ? 0 : a.protocol === 'tcp' ? -1 : 1))) {
    const key = `PORT_${p.guest}`;
    if (env[key] === undefined) env[key] = String(p.host);
    else if (p.protocol === 'udp') env[`${key}_UDP`] = String(p.host);
  }
  return env;
}

interface Tools {
  perl: string;
  /** null: the shim sets the limits itself. */
  prlimit: string | null;
}

export class ProcessDriver extends SupervisedDriver {
  readonly name = 'process' as const;
  readonly formats: readonly ImageFormat[] = ['executable'];
  protected readonly tools = new HostTools<Tools>(async () => ({
    perl: await requireExecutable(this.opts.perl ?? 'perl', 'perl-base'),
    prlimit: this.rlimitSyscall === undefined ? await requireExecutable(this.opts.prlimit ?? 'prlimit', 'util-linux') : null,
  }));

  /** The prlimit64 system call number here, unless told to use prlimit(1) (an explicit `prlimit`). */
  private readonly rlimitSyscall: number | undefined;

  constructor(private readonly opts: ProcessDriverOptions) {
    super(opts.root);
    this.rlimitSyscall = opts.prlimit === undefined ? prlimitSyscall() : undefined;
  }

  protected async prepare(folder: VmFolder, spec: VmSpecForDriver): Promise<void> {
    // Copy, then rename over: a running copy keeps its (old) inode, so this is safe while it runs.
    const dest = folder.file(spec.name);
    const tmp = `${dest}.tmp`;
    try {
      await copyFile(spec.image.path, tmp, fsc.COPYFILE_FICLONE);
      await chmod(tmp, 0o555);
      await rename(tmp, dest);
    } catch (err) {
      throw new VmDriverError(spec.name, 'create', `copying the executable ${spec.image.path}: ${(err as Error).message}`);
    }
  }

  protected async plan(folder: VmFolder, spec: VmSpecForDriver): Promise<LaunchPlan> {
    const { perl, prlimit } = await this.tools.get();
    return {
      perl,
      ...limitedProgram(`./${spec.name}`, spec.memoryMiB, prlimit === null ? { syscall: this.rlimitSyscall! } : { prlimit }),
      env: processEnv(spec, folder.dir),
      output: FILES.console,
      record: { driver: 'process', uid: spec.uid, generation: spec.generation, specHash: spec.specHash },
      timeoutMs: this.opts.startTimeoutMs ?? 10_000,
    };
  }

  protected async awaitLaunched(): Promise<void> {
    // Launched means exec'd: the shim has recorded the pid and no exec error.
  }

  protected async probe(): Promise<{ state: 'running' }> {
    return { state: 'running' };
  }

  protected async askToStop(_folder: VmFolder, _launch: unknown, run: RunRecord): Promise<void> {
    await signalProgram(run, 'SIGTERM', true);
  }

  protected async forceStop(_folder: VmFolder, _launch: unknown, run: RunRecord): Promise<void> {
    await signalProgram(run, 'SIGKILL', true);
  }

  protected override async cleanupAfterEnd(_folder: VmFolder, run: RunRecord): Promise<void> {
    await killSessionLeftovers(run);
  }
}
