import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, readlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Launcher } from '../src/vm/launcher.js';
import { pidExists } from '../src/host/index.js';
import { limitedProgram, prlimitSyscall } from '../src/vm/process.js';
import { rlimitOptions } from '../src/vm/supervise.js';
import { SHIM_SOURCE } from '../src/vm/shim.js';
import { removeDir, tempDir } from '../test/helpers/daemon.js';
import type { Row } from './table.js';

// What a wave of process VMs costs this machine with no daemon at all: the same process chain a
// process VM runs (the launcher forks and runs the perl shim, which sets the limits and runs the VM's
// script, which prints its ready line and execs sleep), `n` of them at once, until every one has
// printed its ready line. The cluster's wave time sits above this; the gap is the daemons' work.

function busyTicks(): number {
  // Read in-process: spawning a reader would add its own CPU to what is measured.
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  return f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!;
}

export async function launchFloorBench(n: number): Promise<Row[]> {
  const root = await tempDir('blixard-launch-floor-');
  const launcher = new Launcher('perl');
  const shims: number[] = [];
  try {
    const script = path.join(root, 'app.sh');
    await writeFile(script, '#!/bin/sh\necho READY\nexec sleep 100000\n', { mode: 0o755 });
    const dirs: string[] = [];
    for (let i = 0; i < n; i++) {
      const d = path.join(root, `vm${i}`);
      await mkdir(d);
      await copyFile(script, path.join(d, 'app'));
      await chmod(path.join(d, 'app'), 0o555);
      dirs.push(d);
    }
    // As the process driver does it: the shim sets the limits, or prlimit(1) runs in between.
    const nr = prlimitSyscall();
    const { argv, rlimits } = limitedProgram('./app', 8, nr === undefined ? { prlimit: 'prlimit' } : { syscall: nr });
    // As the driver does it: the shim compiled once in the launcher, a copy beside the folders.
    const shim = path.join(root, 'shim.pl');
    await writeFile(shim, SHIM_SOURCE);
    launcher.define(shim, SHIM_SOURCE);
    const launch = (d: string, i: number) =>
      launcher.launch({ cwd: d, output: path.join(d, 'shim.log'), argv: [shim, ...rlimitOptions(rlimits), (i + 1).toString(16), 'console.log', '--', ...argv], env: { PATH: '/usr/bin:/bin' }, perlScript: true });
    const ready = async (d: string) => (await readFile(path.join(d, 'console.log'), 'utf8').catch(() => '')).includes('READY');
    const cpu0 = busyTicks();
    const t0 = performance.now();
    shims.push(...(await Promise.all(dirs.map(launch))));
    for (let pending = dirs; pending.length > 0; ) {
      const done = await Promise.all(pending.map(ready));
      pending = pending.filter((_, i) => !done[i]);
      if (pending.length > 0) await new Promise((r) => setTimeout(r, 5));
      if (performance.now() - t0 > 60_000) throw new Error(`launch floor: ${pending.length} chains not ready after 60 s`);
    }
    const took = performance.now() - t0;
    const cpuMs = (busyTicks() - cpu0) * 10;
    return [
      { name: `floor, no daemon: ${n} VM process chains (shim, script) to their ready line`, value: took, unit: 'ms', target: '' },
      { name: `floor, no daemon: CPU the machine spent on them`, value: cpuMs, unit: 'ms', target: '' },
    ];
  } finally {
    launcher.close();
    // The shims first (they would record their program's end), then every chain's `sleep`,
    // found by its folder; the folders go once nothing runs in them.
    const kill = (pid: number) => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    };
    shims.forEach(kill);
    let pids: string[] = [];
    try {
      pids = execFileSync('pgrep', ['-f', 'sleep 100000'], { encoding: 'utf8' }).split('\n').filter(Boolean);
    } catch {
      // pgrep exits 1 when nothing matches
    }
    for (const pid of pids) {
      const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => '');
      if (cwd.startsWith(root)) kill(Number(pid));
    }
    for (let i = 0; i < 200 && shims.some(pidExists); i++) await new Promise((r) => setTimeout(r, 10));
    await removeDir(root);
  }
}
