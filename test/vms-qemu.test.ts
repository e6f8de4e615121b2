import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EventJson, ResourceJson, VmStatus } from '../src/api/index.js';
import { QemuDriver, driverRoot } from '../src/vm/index.js';
import { pidExists } from '../src/host/index.js';
import { cli, removeDir, removeVms, ROOT, startDaemon, tempDir, type Daemon } from './helpers/daemon.js';
import { until } from './helpers/until.js';

// Real QEMU VMs through the daemon (issue 5): the tiny Linux guest of SPEC section 6 boots to its
// ready line, is recreated on a memory change, powers down through ACPI, is restarted with
// backoff when killed, is adopted by a restarted daemon, and leaves nothing behind when deleted.
// Needs qemu-system-x86, qemu-utils, busybox-static and cpio (.ci/run installs them).

let work: string;
let d: Daemon;
const dataDir = () => path.join(work, 'node');
const configHome = () => path.join(work, 'config');
const run = (args: string[]) => cli(['--server', d.api, '--token', d.token, ...args], { configHome: configHome(), cwd: work });
const driver = () => new QemuDriver({ root: driverRoot(dataDir(), 'qemu') });
const PORT = 18190;

async function manifest(extra = ''): Promise<string> {
  const dir = path.join(work, 'set');
  await mkdir(dir, { recursive: true });
  const out = path.join(ROOT, 'examples', 'tiny-linux', 'out');
  await writeFile(
    path.join(dir, 'vm.yaml'),
    `apiVersion: blixard.dev/v1
kind: Image
metadata: { name: tiny }
spec: { path: ${out}/vmlinuz, initrd: ${out}/initrd.img, format: kernel, readyPattern: BLIXARD-GUEST-READY }
---
apiVersion: blixard.dev/v1
kind: VirtualMachine
metadata: { name: guest }
spec:
  image: tiny
  memoryMiB: 192
  kernelArgs: console=ttyS0
  ports: [{ host: ${PORT}, guest: 80 }]${extra}
`,
  );
  return dir;
}

const WAIT_MS = 60_000;
const POLL_MS = 200;

const vm = async () => (await d.client.get('VirtualMachine', 'guest')) as ResourceJson & { status: VmStatus };
const events = (): Promise<EventJson[]> => d.client.events('VirtualMachine', 'guest');
// Whether the process is there (the VM's QEMU runs as this user, so no EPERM case arises).
const alive = pidExists;

beforeAll(async () => {
  work = await tempDir();
  // The guest: built from Debian packages (cached after the first build).
  execFileSync('sh', [path.join(ROOT, 'examples', 'tiny-linux', 'build.sh')], { stdio: 'ignore', timeout: 300_000 });
  d = await startDaemon({ dataDir: dataDir(), configHome: configHome(), args: ['--bootstrap', '--hypervisor', 'qemu,process'] });
}, 320_000);

afterAll(async () => {
  await d?.stop();
  await removeVms(dataDir());
  await removeDir(work);
});

describe('QEMU VMs through the reconciler', () => {
  it('boots the guest to its ready line, shows Running, and its hostfwd port reaches the guest', async () => {
    expect(run(['apply', '-f', await manifest(), '--wait', '--timeout', '90s']).code).toBe(0);
    const st = (await vm()).status;
    expect(st).toMatchObject({ phase: 'Running', nodeId: d.nodeId, observedGeneration: 1 });
    expect(run(['logs', 'vm', 'guest']).stdout).toContain('BLIXARD-GUEST-READY');
    const o = await driver().inspect('guest');
    expect(o.state).toBe('running');
    const page = await until('the guest web server', async () => (await fetch(`http://127.0.0.1:${PORT}/`)).ok, 30_000, POLL_MS);
    expect(page).toBe(true);
  });

  it("says why QEMU would not start, on the VM's status line: here a host port the first VM holds", async () => {
    const dir = path.join(work, 'clash');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'vm.yaml'), `apiVersion: blixard.dev/v1\nkind: VirtualMachine\nmetadata: { name: clash }\nspec: { image: tiny, memoryMiB: 128, ports: [{ host: ${PORT}, guest: 80 }] }\n`);
    expect(run(['apply', '-f', dir]).code).toBe(0);
    const st = await until('the failed start reported', async () => {
      const s = ((await d.client.get('VirtualMachine', 'clash')) as ResourceJson & { status: VmStatus }).status;
      return s.message?.includes('QEMU exited during start-up:') ? s : undefined;
    }, 60_000, POLL_MS);
    expect(st.message).toMatch(/host forwarding rule/i);
    expect(run(['delete', 'vm', 'clash']).code).toBe(0);
    expect((await vm()).status.phase).toBe('Running');
  });

  it('is recreated when its memory changes, and powers down through ACPI when Stopped', async () => {
    const before = await driver().inspect('guest');
    const dir = await manifest();
    await writeFile(path.join(dir, 'vm.yaml'), readFileSync(path.join(dir, 'vm.yaml'), 'utf8').replace('memoryMiB: 192', 'memoryMiB: 224'));
    expect(run(['apply', '-f', dir, '--wait', '--timeout', '90s']).code).toBe(0);
    const after = await driver().inspect('guest');
    expect(after.pid).not.toBe(before.pid);
    expect(alive(before.pid!)).toBe(false);
    expect((await vm()).status.observedGeneration).toBe(2);

    await writeFile(path.join(dir, 'vm.yaml'), readFileSync(path.join(dir, 'vm.yaml'), 'utf8').replace('ports:', 'state: Stopped\n  ports:'));
    expect(run(['apply', '-f', dir, '--wait', '--timeout', '60s']).code).toBe(0);
    expect((await vm()).status.phase).toBe('Stopped');
    const stopped = (await events()).find((e) => e.reason === 'Stopped');
    // Graceful: the guest's acpid powered it off within the grace period; not forced off.
    expect(stopped).toMatchObject({ type: 'Normal', message: expect.stringMatching(/^stopped in \d+ ms$/) });
    expect(alive(after.pid!)).toBe(false);
    expect((await driver().inspect('guest')).state).toBe('stopped');

    await writeFile(path.join(dir, 'vm.yaml'), readFileSync(path.join(dir, 'vm.yaml'), 'utf8').replace('state: Stopped\n  ', ''));
    expect(run(['apply', '-f', dir, '--wait', '--timeout', '90s']).code).toBe(0);
  });

  it('restarts a killed QEMU per policy, with backoff when it keeps dying', async () => {
    const first = await driver().inspect('guest');
    process.kill(first.pid!, 'SIGKILL');
    const second = await until('a restart after the kill', async () => {
      const o = await driver().inspect('guest');
      return o.state === 'running' && o.pid !== first.pid ? o : undefined;
    }, WAIT_MS, POLL_MS);
    // Killed again soon after it started: a crash loop; the next start waits (BackOff).
    process.kill(second.pid!, 'SIGKILL');
    await until('a BackOff event', async () => (await events()).find((e) => e.reason === 'BackOff'), 30_000, POLL_MS);
    await until('Running again after the backoff', async () => (await vm()).status.phase === 'Running', 120_000, POLL_MS);
  });

  it('is adopted, not duplicated, by a daemon restarted after SIGKILL', async () => {
    const o = await driver().inspect('guest');
    await d.kill();
    expect(alive(o.pid!)).toBe(true);
    d = await startDaemon({ dataDir: dataDir(), configHome: configHome(), args: [] });
    await until('Running after adoption', async () => (await vm()).status.phase === 'Running', WAIT_MS, POLL_MS);
    const all = await driver().list();
    expect(all.map((x) => [x.name, x.state, x.pid])).toEqual([['guest', 'running', o.pid]]);
  });

  it('leaves nothing behind when deleted: no process, no socket, no overlay, no folder', async () => {
    const o = await driver().inspect('guest');
    expect(run(['delete', 'vm', 'guest']).code).toBe(0);
    await until('the VM to be gone', async () => (await driver().list()).length === 0, WAIT_MS, POLL_MS);
    expect(alive(o.pid!)).toBe(false);
    expect(existsSync(path.join(driverRoot(dataDir(), 'qemu'), 'guest'))).toBe(false);
  });
});
