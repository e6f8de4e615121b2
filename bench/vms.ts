import { spawn, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ApplyRequest, VmStatus } from '../src/api/index.js';
import { ProcessDriver, QemuDriver, driverRoot } from '../src/vm/index.js';
import { ROOT, removeDir, startDaemon, tempDir, type Daemon } from '../test/helpers/daemon.js';
import type { Row } from './table.js';

// Issue 5's numbers: process-driver VMs one node brings from applied to Running per second (100
// and 1,000 VMs; target: 1,000 Running in < 30 s), the daemon's RSS per managed VM, and QEMU's
// apply-to-ready time next to the raw qemu-system-x86_64 boot of the same guest, in one run.

const SCRIPT = '#!/bin/sh\necho VM-READY\nexec sleep 100000\n';

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

async function runningCount(d: Daemon, names: Set<string>): Promise<number> {
  return (await d.client.list('VirtualMachine')).filter((v) => names.has(v.metadata.name) && (v.status as VmStatus).phase === 'Running').length;
}

export async function vmsBench(): Promise<Row[]> {
  const rows: Row[] = [];
  const work = await tempDir('blixard-vms-bench-');
  const dataDir = path.join(work, 'node');
  let d: Daemon | undefined;
  try {
    d = await startDaemon({ dataDir, configHome: path.join(work, 'config'), args: ['--bootstrap', '--hypervisor', 'qemu,process', '--vcpus', '4096', '--memory-mib', '1048576'] });
    const set = path.join(work, 'set');
    await mkdir(set, { recursive: true });
    await writeFile(path.join(set, 'app.sh'), SCRIPT, { mode: 0o755 });
    // The image goes in through the CLI path once (upload), then VMs are applied through the API.
    const { cli } = await import('../test/helpers/daemon.js');
    await writeFile(path.join(set, 'image.yaml'), 'apiVersion: blixard.dev/v1\nkind: Image\nmetadata: { name: app }\nspec: { path: ./app.sh, format: executable, readyPattern: VM-READY }\n');
    cli(['--server', d.api, '--token', d.token, 'apply', '-f', set], { configHome: path.join(work, 'config') });
    const rssBefore = rssKiB(d.proc.pid!);

    for (const n of (process.env.BENCH_VM_WAVES ?? '100,1000').split(',').map(Number)) {
      const names = Array.from({ length: n }, (_, i) => `p${n}-${i}`);
      const req: ApplyRequest = { desired: names.map((name) => ({ kind: 'VirtualMachine' as const, name, labels: {}, spec: { image: 'app', memoryMiB: 16 } })), applyset: `wave-${n}`, prune: false, maxPrune: 0, dryRun: false };
      const t0 = performance.now();
      await d.client.apply(req);
      const want = new Set(names);
      while ((await runningCount(d, want)) < n) await new Promise((r) => setTimeout(r, 250));
      const secs = (performance.now() - t0) / 1000;
      rows.push({ name: `${n} process VMs: applied to all Running`, value: secs * 1000, unit: 'ms', target: n === 1000 ? '< 30000 ms' : '' });
      rows.push({ name: `${n} process VMs: VMs Running per second`, value: n / secs, unit: '/s', target: '' });
    }
    const managed = (await new ProcessDriver({ root: driverRoot(dataDir, 'process') }).list()).length;
    rows.push({ name: `daemon RSS per managed VM (${managed} VMs)`, value: (rssKiB(d.proc.pid!) - rssBefore) / managed, unit: 'KiB', target: '' });
    rows.push({ name: 'daemon RSS in all', value: rssKiB(d.proc.pid!) / 1024, unit: 'MiB', target: '' });
    const td = performance.now();
    await d.client.delete({ targets: (await d.client.list('VirtualMachine')).map((v) => ({ kind: 'VirtualMachine' as const, name: v.metadata.name })) });
    while ((await new ProcessDriver({ root: driverRoot(dataDir, 'process') }).list()).length > 0) await new Promise((r) => setTimeout(r, 250));
    rows.push({ name: `deleted ${managed} process VMs, until none is left`, value: performance.now() - td, unit: 'ms', target: '' });

    // QEMU: apply to ready (through the daemon) against the raw boot of the same guest.
    execFileSync('sh', [path.join(ROOT, 'examples', 'tiny-linux', 'build.sh')], { stdio: 'ignore' });
    const out = path.join(ROOT, 'examples', 'tiny-linux', 'out');
    const raw = await rawBoot(path.join(out, 'vmlinuz'), path.join(out, 'initrd.img'));
    await writeFile(
      path.join(set, 'tiny.yaml'),
      `apiVersion: blixard.dev/v1\nkind: Image\nmetadata: { name: tiny }\nspec: { path: ${out}/vmlinuz, initrd: ${out}/initrd.img, format: kernel, readyPattern: BLIXARD-GUEST-READY }\n---\napiVersion: blixard.dev/v1\nkind: VirtualMachine\nmetadata: { name: tiny-bench }\nspec: { image: tiny, memoryMiB: 256, kernelArgs: console=ttyS0 }\n`,
    );
    const t0 = performance.now();
    const q = cli(['--server', d.api, '--token', d.token, 'apply', '-f', path.join(set, 'tiny.yaml'), '--wait', '--timeout', '55s'], { configHome: path.join(work, 'config') });
    if (q.code !== 0) throw new Error(`QEMU guest not Running through Blixard: ${q.stdout}${q.stderr}\n${JSON.stringify((await d.client.get('VirtualMachine', 'tiny-bench')).status)}`);
    rows.push({ name: 'QEMU tiny guest: apply to Running (ready line), through Blixard', value: performance.now() - t0, unit: 'ms', target: '' });
    rows.push({ name: 'QEMU tiny guest: raw qemu-system-x86_64 boot to the ready line', value: raw, unit: 'ms', target: '' });
  } finally {
    await d?.stop();
    for (const drv of [new ProcessDriver({ root: driverRoot(dataDir, 'process') }), new QemuDriver({ root: driverRoot(dataDir, 'qemu') })]) {
      for (const o of await drv.list().catch(() => [])) await drv.delete(o.name, 0).catch(() => {});
    }
    await removeDir(work);
  }
  return rows;
}

/** The same guest straight from qemu-system-x86_64 (TCG, serial on stdio), until its ready line. */
function rawBoot(kernel: string, initrd: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const q = spawn('qemu-system-x86_64', ['-machine', 'q35', '-accel', 'tcg', '-m', '256M', '-nodefaults', '-no-user-config', '-display', 'none', '-serial', 'stdio', '-kernel', kernel, '-initrd', initrd, '-append', 'console=ttyS0'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let buf = '';
    const t = setTimeout(() => {
      q.kill('SIGKILL');
      reject(new Error('raw boot: no ready line within 120 s'));
    }, 120_000);
    q.stdout.on('data', (c: Buffer) => {
      buf += c.toString();
      if (buf.includes('BLIXARD-GUEST-READY')) {
        clearTimeout(t);
        resolve(performance.now() - t0);
        q.kill('SIGKILL');
      }
    });
  });
}
