import { execFile } from 'node:child_process';
import { constants as fsc } from 'node:fs';
import { access, rename, rm, stat } from 'node:fs/promises';
import { CPU_MODEL, kvmUsable, type Accel } from './accel.js';
import { VmDriverError, type ImageFormat, type VmSpecForDriver } from './driver.js';
import { exists, pollUntil, textTail } from './files.js';
import { HostTools, requireExecutable } from './host-tools.js';
import { KeyedLock } from './keyed-lock.js';
import { isAlive } from '../host/index.js';
import { QmpClient, withQmp } from './qmp.js';
import { programOf, SAFE_PATH, type LaunchPlan } from './supervise.js';
import { SupervisedDriver } from './supervised-driver.js';
import { FILES, type LaunchRecord, type RunRecord, type VmFolder } from './vm-folder.js';

// One qemu-system-x86_64 per VM, controlled over QMP on a unix socket in the VM's folder.
// Kernel images boot with -kernel/-initrd/-append; raw and qcow2 images run on a per-VM qcow2
// overlay (created at `create`, kept across restarts as the VM's disk, removed at `delete`),
// so the image in the store is only ever opened read-only, as the overlay's backing file.
// Networking is QEMU user mode; `ports` become hostfwd rules bound to 127.0.0.1 only.

export interface QemuDriverOptions {
  /** `<data-dir>/vms/qemu` */
  root: string;
  qemu?: string;
  qemuImg?: string;
  perl?: string;
  /** auto (default): KVM when a probe guest runs under it, else TCG. */
  accel?: 'auto' | Accel;
  /** How long start waits for QMP to answer. */
  startTimeoutMs?: number;
}

const OVERLAY = 'overlay.qcow2';
const QMP_SOCKET = 'qmp.sock';
const QEMU_LOG = 'qemu.log';
const QMP_TIMEOUT_MS = 3000;

/**
 * The command line (without the binary) for one VM. Pure: file names are relative to the VM
 * folder, which is QEMU's working directory (and keeps the QMP path short).
 */
export function qemuArgs(spec: VmSpecForDriver, accel: Accel): string[] {
  const args = [
    '-name', `guest=${spec.name}`, // a DNS label: nothing to escape in QEMU's key=value syntax
    '-machine', 'q35',
    '-accel', accel,
    '-cpu', CPU_MODEL[accel],
    '-smp', String(spec.vcpus),
    '-m', `${spec.memoryMiB}M`,
    '-nodefaults', '-no-user-config',
    '-display', 'none',
    // The serial console goes to a file; there is no monitor on stdio, only QMP on the socket.
    '-chardev', `file,id=console,path=${FILES.console}`,
    '-serial', 'chardev:console',
    '-qmp', `unix:${QMP_SOCKET},server=on,wait=off`,
  ];
  if (spec.image.format === 'kernel') {
    args.push('-kernel', spec.image.path);
    if (spec.image.initrdPath) args.push('-initrd', spec.image.initrdPath);
    args.push('-append', kernelCommandLine(spec.kernelArgs));
  } else {
    args.push('-drive', `file=${OVERLAY},format=qcow2,if=virtio`);
  }
  const fwd = spec.ports.map((p) => `,hostfwd=${p.protocol}:127.0.0.1:${p.host}-:${p.guest}`).join('');
  args.push('-netdev', `user,id=net0${fwd}`, '-device', 'virtio-net-pci,netdev=net0');
  return args;
}

/** The console log is the serial port: a command line that names no console gets ttyS0. */
export function kernelCommandLine(kernelArgs: string | undefined): string {
  const a = (kernelArgs ?? '').trim();
  return /(^|\s)console=/.test(a) ? a : `${a} console=ttyS0`.trim();
}

interface Tools {
  qemu: string;
  qemuImg: string;
  perl: string;
}

export class QemuDriver extends SupervisedDriver {
  readonly name = 'qemu' as const;
  readonly formats: readonly ImageFormat[] = ['kernel', 'raw', 'qcow2'];
  private readonly qmpLock = new KeyedLock(); // QEMU serves one QMP client at a time
  protected readonly tools = new HostTools<Tools>(async () => ({
    qemu: await requireExecutable(this.opts.qemu ?? 'qemu-system-x86_64', 'qemu-system-x86'),
    qemuImg: await requireExecutable(this.opts.qemuImg ?? 'qemu-img', 'qemu-utils'),
    perl: await requireExecutable(this.opts.perl ?? 'perl', 'perl-base'),
  }));

  constructor(private readonly opts: QemuDriverOptions) {
    super(opts.root);
  }

  /** Which accelerator VMs get, and why. */
  async accelerator(): Promise<{ accel: Accel; why: string }> {
    const { qemu } = await this.tools.get();
    if (this.opts.accel === 'kvm' || this.opts.accel === 'tcg') return { accel: this.opts.accel, why: 'configured' };
    const kvm = await kvmUsable(qemu);
    return { accel: kvm.ok ? 'kvm' : 'tcg', why: kvm.why };
  }

  protected async prepare(folder: VmFolder, spec: VmSpecForDriver, previous: VmSpecForDriver | null, running: boolean): Promise<void> {
    await readable(folder.name, spec.image.path);
    if (spec.image.initrdPath) await readable(folder.name, spec.image.initrdPath);
    const overlay = folder.file(OVERLAY);
    const sameDisk = previous?.image.path === spec.image.path && previous.image.format === spec.image.format && (await exists(overlay));
    if (sameDisk) return; // keep the VM's disk across re-creates with the same image
    if (running && (spec.image.format !== 'kernel' || (await exists(overlay)))) {
      throw new VmDriverError(folder.name, 'create', 'its image changed while it runs: stop it first (its disk overlay must be replaced)');
    }
    if (spec.image.format === 'kernel') {
      await rm(overlay, { force: true });
      return;
    }
    const { qemuImg } = await this.tools.get();
    const tmp = folder.file(`${OVERLAY}.tmp`);
    const argv = ['create', '-q', '-f', 'qcow2', '-F', spec.image.format, '-b', spec.image.path, tmp];
    await run(qemuImg, argv).catch((err: Error) => {
      throw new VmDriverError(folder.name, 'create', `qemu-img ${argv.join(' ')} failed`, err.message);
    });
    await rename(tmp, overlay);
  }

  protected async plan(folder: VmFolder, spec: VmSpecForDriver): Promise<LaunchPlan> {
    const { qemu, perl } = await this.tools.get();
    const { accel } = await this.accelerator();
    return {
      perl,
      argv: [qemu, ...qemuArgs(spec, accel)],
      env: { PATH: SAFE_PATH, HOME: folder.dir },
      output: QEMU_LOG,
      record: { driver: 'qemu', uid: spec.uid, generation: spec.generation, specHash: spec.specHash, qmpSocket: folder.file(QMP_SOCKET), accel },
      timeoutMs: 10_000,
    };
  }

  protected async awaitLaunched(folder: VmFolder, launch: LaunchRecord, run: RunRecord): Promise<void> {
    const timeoutMs = this.opts.startTimeoutMs ?? 30_000;
    const answered = await pollUntil(async () => {
      if (!(await isAlive(programOf(run)))) {
        const tail = await textTail(folder.file(QEMU_LOG));
        // QEMU's own last words (a host port in use, a missing file) belong on the status line.
        const why = tail.trimEnd().split('\n').pop()?.trim().slice(0, 300);
        throw new VmDriverError(folder.name, 'start', `QEMU exited during start-up${why ? `: ${why}` : ''}`, tail);
      }
      try {
        return await this.qmp(folder.name, socketOf(launch), (c) => c.queryStatus(), 1000);
      } catch {
        return undefined; // the socket is not there yet
      }
    }, timeoutMs, 50);
    if (!answered) throw new VmDriverError(folder.name, 'start', `QMP did not answer within ${timeoutMs} ms`, await textTail(folder.file(QEMU_LOG)));
  }

  protected async probe(folder: VmFolder, launch: LaunchRecord): Promise<{ state: 'running' | 'unknown'; detail?: string }> {
    try {
      const st = await this.qmp(folder.name, socketOf(launch), (c) => c.queryStatus(), QMP_TIMEOUT_MS);
      if (st.status === 'running') return { state: 'running', detail: `accel ${launch.accel ?? '?'}` };
      return { state: 'unknown', detail: `QEMU status: ${st.status}` };
    } catch (err) {
      return { state: 'unknown', detail: `QEMU runs but QMP does not answer: ${(err as Error).message}` };
    }
  }

  /** ACPI power button: the guest decides how to shut down (acpid, systemd-logind, ...). */
  protected async askToStop(folder: VmFolder, launch: LaunchRecord): Promise<void> {
    await this.qmp(folder.name, socketOf(launch), (c) => c.execute('system_powerdown'), QMP_TIMEOUT_MS);
  }

  protected async forceStop(folder: VmFolder, launch: LaunchRecord): Promise<void> {
    await this.qmp(
      folder.name,
      socketOf(launch),
      async (c) => {
        // QEMU may close the connection before its answer arrives: that is the quit happening.
        await Promise.race([c.execute('quit').catch(() => undefined), c.closed]);
      },
      QMP_TIMEOUT_MS,
    );
  }

  private qmp<T>(name: string, socket: string, fn: (c: QmpClient) => Promise<T>, timeoutMs: number): Promise<T> {
    return this.qmpLock.run(name, () => withQmp(socket, fn, { timeoutMs }));
  }
}

function socketOf(launch: LaunchRecord): string {
  if (!launch.qmpSocket) throw new Error(`launch ${launch.launchId} has no QMP socket`);
  return launch.qmpSocket;
}

async function readable(vm: string, file: string): Promise<void> {
  try {
    await access(file, fsc.R_OK);
    if (!(await stat(file)).isFile()) throw new Error('not a regular file');
  } catch (err) {
    throw new VmDriverError(vm, 'create', `image file ${file}: ${(err as Error).message}`);
  }
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 60_000 }, (err, _stdout, stderr) => (err ? reject(new Error(`${String(stderr).trim() || err.message}`)) : resolve()));
  });
}
