// The contract between the node's reconciler and a hypervisor driver.
//
// A driver owns one root folder (`<data-dir>/vms/<driver>/`) and keeps everything about a VM in
// `<root>/<name>/`: the spec it was created with, what was launched, the pid and exit status the
// shim recorded, the console log. It holds no state of its own between calls: every `inspect`
// re-reads those files and checks /proc (and QMP), so a restarted daemon sees exactly what the
// previous one left running ("adoption" is just reading), and status is observed, never assumed.

export type DriverName = 'qemu' | 'process';
export type ImageFormat = 'kernel' | 'raw' | 'qcow2' | 'executable';

export interface PortMapping {
  host: number;
  guest: number;
  protocol: 'tcp' | 'udp';
}

/** What a driver needs to run one VM: the manifest's spec with defaults applied, plus the image's
 * local file(s) in the node's image store. */
export interface VmSpecForDriver {
  name: string; // DNS-1123 label; also the folder name
  uid: string;
  generation: number;
  vcpus: number;
  memoryMiB: number;
  kernelArgs?: string;
  ports: PortMapping[];
  image: {
    format: ImageFormat;
    /** Local path of the image content. The driver only ever reads it. */
    path: string;
    initrdPath?: string;
  };
  /** Opaque to the driver; recorded at each launch so the reconciler can see drift. */
  specHash: string;
}

/**
 * - `missing`: no such VM under this driver's root.
 * - `stopped`: created and not running: never started, or ended after a `stop` of this driver.
 * - `running`: its process is alive (same pid AND same start time as launched); for QEMU also
 *   QMP `query-status` says `running`.
 * - `exited`: it ended without being asked to (crash, guest poweroff, killed); `exit` says how,
 *   when the shim could record it.
 * - `unknown`: alive but not answering as expected (QEMU paused, QMP unreachable), or a launch
 *   still in progress; `detail` says which.
 */
export type VmState = 'running' | 'stopped' | 'exited' | 'missing' | 'unknown';

export interface VmExit {
  /** Exit code when the process exited by itself, else null. */
  code: number | null;
  /** Signal name (e.g. SIGKILL) when a signal ended it, else null. */
  signal: string | null;
  at: string; // ISO 8601
}

export interface VmObservation {
  name: string;
  uid: string;
  state: VmState;
  driver: DriverName;
  /** The process of the last launch (qemu-system-x86_64, or the executable). */
  pid?: number;
  /** Changes with every start; lets callers tell a restart from the same run. */
  launchId?: string;
  startedAt?: string;
  /** How the last launch ended, when it has ended and the shim recorded it. */
  exit?: VmExit;
  /** The hash of what is running (or last ran); of the created spec when never started. */
  specHash?: string;
  generation?: number;
  /** Human-readable facts worth showing: accelerator, QEMU status, why exit is unknown. */
  detail?: string;
}

export interface StopResult {
  /** `graceful`: it ended within the grace period after ACPI powerdown / SIGTERM.
   *  `forced`: it had to be ended with QMP `quit` / SIGKILL. `not-running`: nothing to stop. */
  outcome: 'graceful' | 'forced' | 'not-running';
  elapsedMs: number;
  exit?: VmExit;
}

export interface ConsoleLogOptions {
  /** Only the last N bytes (default: the whole log of the current launch). */
  tailBytes?: number;
  /** Keep delivering appended output to `onData` until this signal aborts. */
  follow?: AbortSignal;
  onData?: (chunk: Buffer) => void;
}

export interface Driver {
  readonly name: DriverName;
  /** Image formats this driver runs (what the node advertises to the scheduler). */
  readonly formats: readonly ImageFormat[];
  readonly root: string;

  /** Whether this machine can run the driver; `why` names what is missing (and its package). */
  available(): Promise<{ ok: boolean; why?: string }>;

  /** Prepares the VM's folder (and, for disk images, its qcow2 overlay). Idempotent. With a new
   * spec for the same uid it records the new spec for the next start; a VM of the same name but
   * another uid is an error (delete it first). */
  create(spec: VmSpecForDriver): Promise<void>;

  /** Starts the VM detached (own session, through the shim) and returns once it is launched:
   * the shim has recorded the pid and, for QEMU, QMP answers. Starting a running VM is a no-op. */
  start(name: string): Promise<void>;

  /** Graceful stop (ACPI powerdown / SIGTERM), then force (QMP quit / SIGKILL) after graceMs. */
  stop(name: string, graceMs: number): Promise<StopResult>;

  /** Stops it if needed (force after graceMs, default 0) and removes everything it had: process,
   * sockets, overlay, folder. Deleting a missing VM is a no-op. */
  delete(name: string, graceMs?: number): Promise<void>;

  inspect(name: string): Promise<VmObservation>;

  /** Every VM under this driver's root, including those a previous daemon started. */
  list(): Promise<VmObservation[]>;

  /** The console (QEMU serial; process stdout+stderr) of the current or last launch. */
  consoleLog(name: string, opts?: ConsoleLogOptions): Promise<Buffer>;
}

/** A driver failure with the context an operator needs: which VM, doing what, and the tail of
 * the relevant output. */
export class VmDriverError extends Error {
  constructor(
    readonly vm: string,
    readonly action: string,
    message: string,
    readonly outputTail?: string,
  ) {
    super(`vm ${vm}: ${action}: ${message}${outputTail ? `\n--- last output ---\n${outputTail.trimEnd()}` : ''}`);
    this.name = 'VmDriverError';
  }
}

const NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** VM names become folder names: only DNS-1123 labels, so nothing can escape the root. */
export function assertVmName(name: string): void {
  if (!NAME.test(name)) throw new VmDriverError(name, 'validate', 'expected a DNS-1123 label (lowercase letters, digits, -; at most 63)');
}
