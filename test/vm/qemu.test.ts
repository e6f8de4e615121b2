import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, readdir, stat, utimes, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { QemuDriver, withQmp, type VmSpecForDriver } from '../../src/vm/index.js';
import { runProbeGuest } from '../../src/vm/accel.js';
import { readProcStat } from '../../src/host/index.js';
import { prerequisites, processesIn, removeRoot, spec, tempRoot, tinyLinux, waitFor } from './support.js';

// The qemu driver with real QEMU (TCG here; KVM where usable) and the real tiny Linux guest of
// examples/tiny-linux. Missing QEMU or guest tools fail the suite, naming the Debian packages.
// One booted guest serves several checks; the others need QEMU running, not a booted guest.

let work: string;
let root: string;
let driver: QemuDriver;
let guest: { vmlinuz: string; initrd: string };

const READY = 'BLIXARD-GUEST-READY';
const BOOT_BOUND_MS = 60_000;

function kernelVm(name: string, over: Partial<VmSpecForDriver> = {}): VmSpecForDriver {
  return spec(name, { kernelArgs: 'console=ttyS0 quiet', image: { format: 'kernel', path: guest.vmlinuz, initrdPath: guest.initrd }, ...over });
}

async function consoleText(name: string): Promise<string> {
  return (await driver.consoleLog(name)).toString();
}

async function readRun(name: string): Promise<{ pid: number; shimPid: number }> {
  return JSON.parse(await readFile(path.join(root, name, 'run.json'), 'utf8')) as { pid: number; shimPid: number };
}

async function gone(pid: number): Promise<boolean> {
  const st = await readProcStat(pid);
  return st === null || st.state === 'Z';
}

/** QEMU processes (not shims) working in a VM's folder. */
async function qemusIn(dir: string): Promise<number[]> {
  const out: number[] = [];
  for (const pid of await processesIn(dir)) if ((await readProcStat(pid))?.comm.startsWith('qemu-system')) out.push(pid);
  return out;
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/** Local addresses listening on a TCP port, from /proc/net/tcp{,6} (hex, as the kernel prints them). */
async function listeners(port: number): Promise<string[]> {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const out: string[] = [];
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(f, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[3] === '0A' && cols[1]?.endsWith(`:${hexPort}`)) out.push(cols[1].split(':')[0]!);
    }
  }
  return out;
}

function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

function qemuImg(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile('qemu-img', args, (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, out: `${stdout}${stderr}` }));
  });
}

prerequisites(async () => {
  guest = await tinyLinux(); // fails every test (with the apt-get line) when QEMU or the guest's tools are missing
  work = await tempRoot('blixard-qemu-');
  // Deep on purpose: <root>/<vm>/qmp.sock is longer than a unix socket path may be (107 bytes).
  root = path.join(work, 'a-data-dir-with-a-long-path-'.padEnd(80, 'x'), 'vms', 'qemu');
  driver = new QemuDriver({ root });
}, 600_000);

afterAll(async () => {
  if (driver) for (const vm of await driver.list()) await driver.delete(vm.name).catch(() => {});
  if (work) await removeRoot(work);
});

describe('qemu driver (real QEMU)', () => {
  const timings: Record<string, number> = {};
  afterAll(() => {
    // Shown in the test output, for the record.
    console.log(`qemu driver timings: ${Object.entries(timings).map(([k, v]) => `${k} ${v} ms`).join(', ')}`);
  });

  it('is available and picks an accelerator it has proven to work', async () => {
    expect(await driver.available()).toEqual({ ok: true });
    const { accel, why } = await driver.accelerator();
    expect(['kvm', 'tcg']).toContain(accel);
    expect(why).toBeTruthy();
    if (accel === 'kvm') expect(why).toBe('a probe guest ran under KVM');
    // The probe itself works: under TCG (always available) its guest reaches the exit port.
    expect(await runProbeGuest('qemu-system-x86_64', 'tcg')).toEqual({ ok: true, why: 'a probe guest ran under tcg' });
  });

  let webPort = 0;
  it('boots the tiny Linux guest to its ready line; inspect says running (QMP); the port forward reaches its httpd', async () => {
    webPort = await freePort();
    await driver.create(kernelVm('web', { ports: [{ host: webPort, guest: 80, protocol: 'tcp' }] }));
    expect(Buffer.byteLength(path.join(root, 'web', 'qmp.sock'))).toBeGreaterThan(107);
    const t0 = Date.now();
    await driver.start('web');
    timings['start() returned'] = Date.now() - t0;

    const obs = await driver.inspect('web');
    expect(obs).toMatchObject({ name: 'web', uid: 'uid-web', state: 'running', driver: 'qemu', specHash: 'hash-web', generation: 1 });
    expect(obs.detail).toMatch(/^accel (tcg|kvm)$/);
    // QEMU's own answer, over the socket the driver recorded.
    const launch = JSON.parse(await readFile(path.join(root, 'web', 'launch.json'), 'utf8')) as { qmpSocket: string; argv: string[] };
    expect(await withQmp(launch.qmpSocket, (c) => c.queryStatus())).toEqual({ running: true, status: 'running' });
    expect(launch.argv[0]).toMatch(/qemu-system-x86_64$/);

    await waitFor('the ready line on the serial console', BOOT_BOUND_MS, async () => (await consoleText('web')).includes(READY));
    timings['boot to ready line'] = Date.now() - t0;

    // hostfwd: bound on loopback only, and it reaches the guest's httpd.
    expect(await listeners(webPort)).toEqual(['0100007F']);
    const res = await fetch(`http://127.0.0.1:${webPort}/`);
    expect(await res.text()).toBe('blixard tiny-linux\n');
  });

  it('a restarted daemon adopts the running VM: same pid, one QEMU, start is a no-op', async () => {
    const before = await driver.inspect('web');
    const restarted = new QemuDriver({ root }); // nothing in memory, as after a daemon restart
    const found = (await restarted.list()).find((o) => o.name === 'web');
    expect(found).toMatchObject({ state: 'running', pid: before.pid, launchId: before.launchId, specHash: 'hash-web' });
    await restarted.start('web');
    expect(await restarted.inspect('web')).toMatchObject({ state: 'running', pid: before.pid, launchId: before.launchId });
    expect(await qemusIn(path.join(root, 'web'))).toEqual([before.pid]);
    driver = restarted; // the rest of the suite talks to the "new daemon"
  });

  it('stop powers the guest down through ACPI, well within the grace period', async () => {
    const grace = 30_000;
    const pid = (await driver.inspect('web')).pid!;
    const r = await driver.stop('web', grace);
    timings['ACPI powerdown'] = r.elapsedMs;
    expect(r.outcome).toBe('graceful');
    expect(r.elapsedMs).toBeLessThan(grace);
    expect(r.exit).toMatchObject({ code: 0, signal: null }); // QEMU ended by itself: the guest powered off
    const stopRec = JSON.parse(await readFile(path.join(root, 'web', 'stop.json'), 'utf8')) as { forcedAt?: string };
    expect(stopRec.forcedAt).toBeUndefined(); // no QMP quit was needed
    const text = await consoleText('web');
    expect(text).toContain('acpid: PWRF/00000080');
    expect(text).toContain('tiny-linux: power button pressed, powering off');
    expect(text).toMatch(/reboot: Power down/);
    expect(await gone(pid)).toBe(true);
    expect(await driver.inspect('web')).toMatchObject({ state: 'stopped', exit: { code: 0, signal: null } });
  });

  it('records how QEMU ended when it is SIGKILLed, and copes when its shim is killed too', async () => {
    await driver.create(kernelVm('crash'));
    await driver.start('crash');
    const first = await driver.inspect('crash');
    expect(first.state).toBe('running');
    process.kill(first.pid!, 'SIGKILL');
    const ended = await waitFor('the exit to be recorded', 10_000, async () => {
      const o = await driver.inspect('crash');
      return o.state === 'exited' ? o : undefined;
    });
    expect(ended.exit).toMatchObject({ code: null, signal: 'SIGKILL' }); // recorded by the shim
    expect(ended.detail).toBeUndefined();

    // Started again: a new launch. Now the shim dies first: QEMU keeps running (it is in its own
    // process group, and nothing kills it), is still seen and controlled, but how it ends can no
    // longer be recorded, and the driver says so instead of guessing.
    await driver.start('crash');
    const second = await driver.inspect('crash');
    expect(second.state).toBe('running');
    expect(second.launchId).not.toBe(first.launchId);
    expect(second.pid).not.toBe(first.pid);
    const { shimPid } = await readRun('crash');
    process.kill(shimPid, 'SIGKILL');
    await waitFor('the shim to be gone', 5000, () => gone(shimPid));
    const orphan = await driver.inspect('crash');
    expect(orphan).toMatchObject({ state: 'running', pid: second.pid });
    expect(orphan.detail).toMatch(/shim is gone/);
    const r = await driver.stop('crash', 0); // no grace: QMP quit at once
    expect(r.outcome).toBe('forced');
    expect(r.exit).toBeUndefined();
    expect(await gone(second.pid!)).toBe(true);
    expect(await driver.inspect('crash')).toMatchObject({ state: 'stopped', detail: 'ended while its shim was gone: exit status unknown' });
    await driver.delete('crash');
  });

  it('runs a raw image on a qcow2 overlay: writes land in the overlay, the image keeps its bytes and mtime', async () => {
    const image = path.join(work, 'disk.raw');
    const original = randomBytes(1 << 20);
    await writeFile(image, original);
    await utimes(image, new Date('2020-01-01T00:00:00Z'), new Date('2020-01-01T00:00:00Z'));
    const before = await stat(image);

    await driver.create(spec('disk', { image: { format: 'raw', path: image } }));
    const overlay = path.join(root, 'disk', 'overlay.qcow2');
    const info = JSON.parse((await qemuImg(['info', '--output=json', '-U', overlay])).out) as { format: string; 'backing-filename': string; 'backing-filename-format': string };
    expect(info).toMatchObject({ format: 'qcow2', 'backing-filename': image, 'backing-filename-format': 'raw' });

    await driver.start('disk'); // no OS on this disk: the firmware finds nothing to boot, QEMU runs on
    expect((await driver.inspect('disk')).state).toBe('running');
    const { qmpSocket } = JSON.parse(await readFile(path.join(root, 'disk', 'launch.json'), 'utf8')) as { qmpSocket: string };
    // The guest's view of its disk: write 64 KiB through the virtio drive.
    await withQmp(qmpSocket, (c) => c.execute('human-monitor-command', { 'command-line': 'qemu-io virtio0 "write -P 0xab 0 65536"' }));
    expect(await readFile(path.join(root, 'disk', 'qemu.log'), 'utf8')).toMatch(/wrote 65536\/65536 bytes/); // qemu-io reports on QEMU's stdout

    // No OS answers the ACPI button: after the grace period it is forced (QMP quit).
    const r = await driver.stop('disk', 1000);
    expect(r.outcome).toBe('forced');
    expect(r.elapsedMs).toBeGreaterThanOrEqual(1000);
    expect(r.exit).toMatchObject({ code: 0, signal: null });

    const after = await stat(image);
    expect(sha256(await readFile(image))).toBe(sha256(original));
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect(after.size).toBe(before.size);
    expect((await qemuImg(['compare', '-f', 'qcow2', '-F', 'raw', overlay, image])).code).toBe(1); // the overlay differs: it took the write
  });

  it('delete leaves nothing: no process, no socket, no overlay, no folder', async () => {
    await driver.create(kernelVm('doomed'));
    await driver.start('doomed');
    const { pid, shimPid } = await readRun('doomed');
    const dir = path.join(root, 'doomed');
    expect((await readdir(dir)).sort()).toEqual(expect.arrayContaining(['console.log', 'launch.json', 'qmp.sock', 'run.json', 'spec.json']));
    await driver.delete('doomed'); // running: forced at once (graceMs defaults to 0)
    expect(await gone(pid)).toBe(true);
    expect(await gone(shimPid)).toBe(true);
    await expect(stat(dir)).rejects.toThrow(/ENOENT/);

    await driver.delete('web'); // stopped VMs
    await driver.delete('disk');
    for (const name of ['web', 'disk']) await expect(stat(path.join(root, name))).rejects.toThrow(/ENOENT/);
    expect(await driver.list()).toEqual([]);
    expect(await readdir(root)).toEqual(['shim.pl']); // the driver's copy of its shim, no VM's
    await driver.delete('doomed'); // idempotent
  });

  it('fails a start with QEMU\'s own words, and leaves nothing running', async () => {
    const port = await freePort();
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve));
    try {
      await driver.create(kernelVm('clash', { ports: [{ host: port, guest: 80, protocol: 'tcp' }] }));
      await expect(driver.start('clash')).rejects.toThrow(new RegExp(`vm clash: start: QEMU exited during start-up[\\s\\S]*${port}`));
      expect(await qemusIn(path.join(root, 'clash'))).toEqual([]);
      expect((await driver.inspect('clash')).state).toBe('exited');
    } finally {
      blocker.close();
      await driver.delete('clash');
    }
  });
});
