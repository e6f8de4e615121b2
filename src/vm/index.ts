import path from 'node:path';
import type { Driver, DriverName } from './driver.js';
import { ProcessDriver } from './process.js';
import { QemuDriver } from './qemu.js';
import { FENCE_FILE } from './supervise.js';

export { VmDriverError, assertVmName } from './driver.js';
export type { ConsoleLogOptions, Driver, DriverName, ImageFormat, PortMapping, StopResult, VmExit, VmObservation, VmSpecForDriver, VmState } from './driver.js';
export { QemuDriver, qemuArgs, kernelCommandLine } from './qemu.js';
export type { QemuDriverOptions } from './qemu.js';
export { ProcessDriver, processEnv } from './process.js';
export type { ProcessDriverOptions } from './process.js';
export { kvmUsable } from './accel.js';
export type { Accel } from './accel.js';
export { QmpClient, QmpError, withQmp } from './qmp.js';
export type { QmpEvent, QmpGreeting, QmpStatus } from './qmp.js';

/** The folder a driver keeps its VMs in. */
export function driverRoot(dataDir: string, driver: DriverName): string {
  return path.join(dataDir, 'vms', driver);
}

/** The file whose freshness keeps this data dir's VMs running (see FENCE_FILE). */
export function fenceFile(dataDir: string): string {
  return path.join(dataDir, 'vms', FENCE_FILE);
}

export interface EnabledDrivers {
  drivers: Driver[];
  /** Drivers asked for (or tried by `auto`) that cannot run here, and why. */
  skipped: { name: DriverName; why: string }[];
}

/**
 * The drivers a node runs for `--hypervisor`: `auto` tries both (process always, qemu when its
 * tools are installed); an explicit list asks for exactly those. A driver that cannot run is
 * reported in `skipped` with the reason (and the Debian package to install); the caller decides
 * whether that is fatal (it should be when the operator named the driver).
 */
export async function enabledDrivers(dataDir: string, hypervisor = 'auto'): Promise<EnabledDrivers> {
  const wanted = hypervisor === 'auto' ? ['process', 'qemu'] : hypervisor.split(',').map((s) => s.trim());
  const out: EnabledDrivers = { drivers: [], skipped: [] };
  for (const name of wanted) {
    if (name !== 'qemu' && name !== 'process') throw new Error(`unknown hypervisor driver ${JSON.stringify(name)} (expected qemu or process)`);
    const d: Driver = name === 'qemu' ? new QemuDriver({ root: driverRoot(dataDir, 'qemu') }) : new ProcessDriver({ root: driverRoot(dataDir, 'process') });
    const a = await d.available();
    if (a.ok) out.drivers.push(d);
    else out.skipped.push({ name, why: a.why ?? 'not available' });
  }
  return out;
}
