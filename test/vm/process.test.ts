import { spawn } from 'node:child_process';
import { mkdir, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { enabledDrivers, ProcessDriver, VmDriverError, type VmSpecForDriver } from '../../src/vm/index.js';
import { readProcStat } from '../../src/host/index.js';
import { freshDistVm, prerequisites, PROCESS_COMMANDS, removeRoot, requireCommands, spec, tempRoot, waitFor } from './support.js';

// The process driver with real processes: the shim, detached sessions, signals, /proc.

let root: string;
let images: string;
let driver: ProcessDriver;

const READY = 'BLIXARD-GUEST-READY';

/** Writes an executable image (a shell script) into the test's "image store". */
async function image(name: string, body: string): Promise<string> {
  const file = path.join(images, name);
  await writeFile(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return file;
}

function exe(name: string, file: string, over: Partial<VmSpecForDriver> = {}): VmSpecForDriver {
  return spec(name, { memoryMiB: 64, image: { format: 'executable', path: file }, ...over });
}

async function consoleText(name: string): Promise<string> {
  return (await driver.consoleLog(name)).toString();
}

async function readRun(name: string): Promise<{ pid: number; shimPid: number; startTicks: number }> {
  return JSON.parse(await readFile(path.join(driver.root, name, 'run.json'), 'utf8')) as { pid: number; shimPid: number; startTicks: number };
}

async function gone(pid: number): Promise<boolean> {
  const st = await readProcStat(pid);
  return st === null || st.state === 'Z';
}

prerequisites(async () => {
  await requireCommands(PROCESS_COMMANDS);
  root = await tempRoot('blixard-process-');
  images = path.join(root, 'images');
  await mkdir(images);
  driver = new ProcessDriver({ root: path.join(root, 'vms', 'process') });
});

afterAll(async () => {
  // Leave no process behind, whatever failed.
  if (driver) for (const vm of await driver.list()) await driver.delete(vm.name).catch(() => {});
  if (root) await removeRoot(root);
});

const SERVER = `echo "${READY} pid=$$ cwd=$(pwd) port=$PORT_80 name=$BLIXARD_VM_NAME token=\${BLIXARD_TOKEN:-none}"
trap 'echo "got TERM"; exit 3' TERM
while :; do sleep 0.1; done`;

describe('process driver', () => {
  it('is available, and runs executable images only', async () => {
    expect(await driver.available()).toEqual({ ok: true });
    expect(driver.formats).toEqual(['executable']);
  });

  it('runs a copy of the executable in its folder, output to console.log, with PORT_ env and nothing of the daemon', async () => {
    const file = await image('server.sh', SERVER);
    const before = await stat(file);
    process.env.BLIXARD_TOKEN = 'daemon-secret';
    try {
      await driver.create(exe('web', file, { ports: [{ host: 18080, guest: 80, protocol: 'tcp' }] }));
      await driver.start('web');
    } finally {
      delete process.env.BLIXARD_TOKEN;
    }
    const obs = await driver.inspect('web');
    expect(obs).toMatchObject({ name: 'web', uid: 'uid-web', state: 'running', driver: 'process', specHash: 'hash-web', generation: 1 });
    const dir = path.join(driver.root, 'web');
    const line = await waitFor('the ready line', 10_000, async () => (await consoleText('web')).split('\n').find((l) => l.startsWith(READY)));
    expect(line).toBe(`${READY} pid=${obs.pid} cwd=${dir} port=18080 name=web token=none`);
    // It runs its own read-only copy; the store's file is untouched.
    const copy = await stat(path.join(dir, 'web'));
    expect(copy.mode & 0o777).toBe(0o555);
    expect(copy.ino).not.toBe(before.ino);
    expect((await stat(file)).mtimeMs).toBe(before.mtimeMs);
    // Detached: its own session (the shim leads it), its own process group.
    const st = await readProcStat(obs.pid!);
    const run = await readRun('web');
    expect(st).toMatchObject({ pgrp: obs.pid, session: run.shimPid });
    expect(st!.session).not.toBe((await readProcStat(process.pid))!.session);
  });

  it('stop sends SIGTERM, and the exit code is recorded', async () => {
    const r = await driver.stop('web', 5000);
    expect(r.outcome).toBe('graceful');
    expect(r.elapsedMs).toBeLessThan(5000);
    expect(r.exit).toMatchObject({ code: 3, signal: null });
    expect(await consoleText('web')).toContain('got TERM');
    const obs = await driver.inspect('web');
    expect(obs).toMatchObject({ state: 'stopped', exit: { code: 3, signal: null } });
    expect(Date.parse(obs.exit!.at)).toBeGreaterThan(Date.parse(obs.startedAt!));
    // Stopping what is stopped is a no-op.
    expect((await driver.stop('web', 1000)).outcome).toBe('not-running');
  });

  it('stop escalates to SIGKILL after the grace period when SIGTERM is ignored', async () => {
    const file = await image('stubborn.sh', `trap '' TERM\necho ${READY}\nwhile :; do sleep 0.1; done`);
    await driver.create(exe('stubborn', file));
    await driver.start('stubborn');
    await waitFor('the ready line', 10_000, async () => (await consoleText('stubborn')).includes(READY));
    const r = await driver.stop('stubborn', 700);
    expect(r.outcome).toBe('forced');
    expect(r.elapsedMs).toBeGreaterThanOrEqual(700);
    expect(r.elapsedMs).toBeLessThan(5000);
    expect(r.exit).toMatchObject({ code: null, signal: 'SIGKILL' });
    const stopRecord = JSON.parse(await readFile(path.join(driver.root, 'stubborn', 'stop.json'), 'utf8')) as { forcedAt?: string };
    expect(stopRecord.forcedAt).toBeDefined();
  });

  it('records exactly how a VM ended on its own: exit code, signal, and exit 137 is not SIGKILL', async () => {
    const cases: [string, string, { code: number | null; signal: string | null }][] = [
      ['exit-0', 'exit 0', { code: 0, signal: null }],
      ['exit-7', 'exit 7', { code: 7, signal: null }],
      ['exit-137', 'exit 137', { code: 137, signal: null }],
      ['killed', 'kill -KILL $$', { code: null, signal: 'SIGKILL' }],
      ['segv', 'kill -SEGV $$', { code: null, signal: 'SIGSEGV' }],
    ];
    for (const [name, body] of cases) {
      await driver.create(exe(name, await image(`${name}.sh`, body)));
      await driver.start(name);
    }
    for (const [name, , exit] of cases) {
      const obs = await waitFor(`${name} to end`, 10_000, async () => {
        const o = await driver.inspect(name);
        return o.state === 'exited' ? o : undefined;
      });
      expect(obs.exit, name).toMatchObject(exit);
      await driver.delete(name);
    }
  });

  it('a SIGTERM sent to the shim is passed on to the program, whose end is recorded', async () => {
    await driver.create(exe('relayed', await image('relayed.sh', SERVER)));
    await driver.start('relayed');
    await waitFor('the ready line', 10_000, async () => (await consoleText('relayed')).includes(READY));
    process.kill((await readRun('relayed')).shimPid, 'SIGTERM');
    const obs = await waitFor('relayed to end', 10_000, async () => {
      const o = await driver.inspect('relayed');
      return o.state === 'exited' ? o : undefined;
    });
    expect(obs.exit).toMatchObject({ code: 3, signal: null }); // its TERM trap ran
    await driver.delete('relayed');
  });

  it('a file that is not a program fails visibly: non-zero exit, the complaint in its console', async () => {
    // Like execvp, a file the kernel cannot execute (no #!, not ELF) is handed to /bin/sh.
    const file = path.join(images, 'not-a-program');
    await writeFile(file, 'this is not a program\n', { mode: 0o755 });
    await driver.create(exe('broken', file));
    await driver.start('broken');
    const obs = await waitFor('broken to end', 10_000, async () => {
      const o = await driver.inspect('broken');
      return o.state === 'exited' ? o : undefined;
    });
    expect(obs.exit).toMatchObject({ code: 127, signal: null });
    expect(await consoleText('broken')).toContain('./broken: 1: this: not found');
    await driver.delete('broken');
  });

  it('enforces memoryMiB as the data size limit (RLIMIT_DATA) of the process', async () => {
    const file = await image('alloc.sh', `grep 'Max data size' /proc/$$/limits\nperl -e 'my $x = "a" x (200 * 1024 * 1024); print "ALLOC-OK\\n"' || echo ALLOC-FAILED`);
    await driver.create(exe('alloc', file, { memoryMiB: 64 }));
    await driver.start('alloc');
    await waitFor('alloc to end', 10_000, async () => (await driver.inspect('alloc')).state === 'exited');
    let out = await consoleText('alloc');
    expect(out).toMatch(/Max data size\s+67108864\s+67108864\s+bytes/);
    expect(out).toContain('ALLOC-FAILED');
    if (process.arch === 'x64') expect(JSON.parse(await readFile(path.join(driver.root, 'alloc', 'launch.json'), 'utf8')).argv).toEqual(['./alloc']); // no prlimit(1) in between
    // The same VM re-created with more memory: the new spec applies at the next start.
    await driver.create(exe('alloc', file, { memoryMiB: 512, specHash: 'hash-alloc-512' }));
    await driver.start('alloc');
    await waitFor('alloc to end', 10_000, async () => (await driver.inspect('alloc')).state === 'exited');
    out = await consoleText('alloc');
    expect(out).toContain('ALLOC-OK');
    expect((await driver.inspect('alloc')).specHash).toBe('hash-alloc-512');
    await driver.delete('alloc');

    // The shim sets the limits itself (prlimit64) where it knows the system call's number; with
    // prlimit(1) named explicitly (or on another architecture) that runs in between instead.
    const viaPrlimit = new ProcessDriver({ root: driver.root, prlimit: 'prlimit' });
    await viaPrlimit.create(exe('alloc2', await image('alloc2.sh', `grep -E 'Max (data size|core file size)' /proc/$$/limits`), { memoryMiB: 32 }));
    await viaPrlimit.start('alloc2');
    await waitFor('alloc2 to end', 10_000, async () => (await viaPrlimit.inspect('alloc2')).state === 'exited');
    const text = (await viaPrlimit.consoleLog('alloc2')).toString();
    expect(text).toMatch(/Max data size\s+33554432\s+33554432\s+bytes/);
    expect(text).toMatch(/Max core file size\s+0\s+0\s+bytes/);
    expect(JSON.parse(await readFile(path.join(driver.root, 'alloc2', 'launch.json'), 'utf8')).argv[0]).toMatch(/prlimit$/);
    await viaPrlimit.delete('alloc2');
  });

  it('a restarted daemon adopts running VMs: same pid, same launch, no second copy', async () => {
    await driver.create(exe('adopted', await image('adopted.sh', SERVER)));
    await driver.start('adopted');
    const first = await driver.inspect('adopted');

    const restarted = new ProcessDriver({ root: driver.root }); // a new daemon: nothing in memory
    const seen = (await restarted.list()).find((o) => o.name === 'adopted');
    expect(seen).toMatchObject({ state: 'running', pid: first.pid, launchId: first.launchId, uid: 'uid-adopted', specHash: 'hash-adopted' });
    await restarted.start('adopted'); // what a reconciler does for a VM that should run: a no-op
    expect(await restarted.inspect('adopted')).toMatchObject({ pid: first.pid, launchId: first.launchId });
    const copies = await countProcesses((cmdline) => cmdline === '/bin/sh\0./adopted\0');
    expect(copies).toBe(1);

    const r = await restarted.stop('adopted', 5000);
    expect(r).toMatchObject({ outcome: 'graceful', exit: { code: 3 } });
    expect(await driver.inspect('adopted')).toMatchObject({ state: 'stopped', exit: { code: 3 } });
    await restarted.delete('adopted');
  });

  it('VMs outlive a daemon SIGKILLed with its whole process group, and the next daemon adopts them', async () => {
    const dist = await freshDistVm();
    const file = await image('survivor.sh', SERVER);
    // A real daemon process: it starts the VM, says so, and is then killed with everything in
    // its process group (as a terminal's Ctrl-C or a service manager's kill would).
    const program = `
      import { ProcessDriver } from ${JSON.stringify(dist)};
      const d = new ProcessDriver({ root: ${JSON.stringify(driver.root)} });
      await d.create(${JSON.stringify(exe('survivor', file))});
      await d.start('survivor');
      console.log('started', (await d.inspect('survivor')).pid);
      setInterval(() => {}, 1000);`;
    const daemon = spawn(process.execPath, ['--input-type=module', '-e', program], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    daemon.stdout.on('data', (d: Buffer) => (out += d.toString()));
    daemon.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const pid = Number(await waitFor('the daemon to start the VM', 15_000, async () => /started (\d+)/.exec(out)?.[1]));
    const exited = new Promise((resolve) => daemon.once('exit', resolve));
    process.kill(-daemon.pid!, 'SIGKILL');
    await exited;

    const obs = await driver.inspect('survivor'); // this test process is the next daemon
    expect(obs).toMatchObject({ state: 'running', pid });
    expect(obs.detail).toBeUndefined(); // its shim lives on too, so its end will be recorded
    expect(await driver.stop('survivor', 5000)).toMatchObject({ outcome: 'graceful', exit: { code: 3, signal: null } });
    await driver.delete('survivor');
  });

  it('stops a VM whose daemon has been silent past the fence time (dead man\'s switch), never one whose daemon is alive', async () => {
    const beat = path.join(root, 'vms', 'heartbeat');
    await writeFile(beat, '2\n'); // fresh: the daemon is alive, VMs may outlive it by 2 s
    await driver.create(exe('fenced', await image('fenced.sh', SERVER)));
    await driver.start('fenced');
    const started = await driver.inspect('fenced');
    // The daemon keeps the file fresh: the VM runs on.
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      await writeFile(beat, '2\n');
    }
    expect((await driver.inspect('fenced')).state).toBe('running');
    // The daemon goes silent: its last beat is 10 s old, more than the 2 s it allowed.
    const old = new Date(Date.now() - 10_000);
    await utimes(beat, old, old);
    const ended = await waitFor('the shim to stop the VM', 8000, async () => {
      const o = await driver.inspect('fenced');
      return o.state !== 'running' ? o : undefined;
    });
    expect(ended.exit?.signal ?? ended.exit?.code).toBeDefined();
    const fenced = JSON.parse(await readFile(path.join(driver.root, 'fenced', 'fenced.json'), 'utf8')) as { daemonSilentFor: number };
    expect(fenced.daemonSilentFor).toBeGreaterThanOrEqual(10);
    expect(started.pid).toBeDefined();
    // 0 means "never": a cluster of one node keeps its VMs whatever happens to the daemon.
    await writeFile(beat, '0\n');
    await utimes(beat, old, old);
    await driver.start('fenced');
    await new Promise((r) => setTimeout(r, 2500));
    expect((await driver.inspect('fenced')).state).toBe('running');
    await driver.delete('fenced');
    await writeFile(beat, '0\n');
  });

  it('never mistakes a reused pid for the VM, and never signals it', async () => {
    await driver.create(exe('reused', await image('reused.sh', SERVER)));
    await driver.start('reused');
    const run = await readRun('reused');
    // The VM and its shim vanish without a trace (shim first: nothing records the end) ...
    process.kill(run.shimPid, 'SIGKILL');
    process.kill(-run.pid, 'SIGKILL');
    await waitFor('the VM to be gone', 5000, async () => (await gone(run.pid)) && (await gone(run.shimPid)));
    // ... and another process now has the pid the record names (a pid reused after a wrap).
    // Real reuse takes a wrap of the pid space; here it must at least start in a later clock tick.
    await new Promise((r) => setTimeout(r, 30));
    const other = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      await waitFor('the other process', 5000, async () => (await readProcStat(other.pid!)) !== null);
      expect((await readProcStat(other.pid!))!.startTicks).not.toBe(run.startTicks);
      const recordFile = path.join(driver.root, 'reused', 'run.json');
      const rec = JSON.parse(await readFile(recordFile, 'utf8')) as Record<string, unknown>;
      await writeFile(recordFile, JSON.stringify({ ...rec, pid: other.pid }));

      const obs = await driver.inspect('reused');
      expect(obs.state).toBe('exited');
      expect(obs.exit).toBeUndefined();
      expect(obs.detail).toMatch(/exit status unknown/);
      expect((await driver.stop('reused', 1000)).outcome).toBe('not-running');
      await driver.delete('reused');
      expect(await gone(other.pid!)).toBe(false); // still alive: never signalled
      // A record from before a reboot is not believed either.
      await driver.create(exe('rebooted', await image('rebooted.sh', SERVER)));
      await driver.start('rebooted');
      const r2file = path.join(driver.root, 'rebooted', 'run.json');
      const r2 = JSON.parse(await readFile(r2file, 'utf8')) as Record<string, unknown>;
      await writeFile(r2file, JSON.stringify({ ...r2, bootId: '00000000-0000-0000-0000-000000000000' }));
      expect((await driver.inspect('rebooted')).state).not.toBe('running');
      await writeFile(r2file, JSON.stringify(r2));
      await driver.delete('rebooted');
    } finally {
      other.kill('SIGKILL');
    }
  });

  it('stop ends the process group; delete also ends what left it, and removes the folder', async () => {
    const file = await image(
      'spawner.sh',
      `sleep 1000 &\necho "same-group $!"\nperl -e 'setpgrp(0, 0); sleep 1000' &\necho "own-group $!"\necho ${READY}\nwhile :; do sleep 0.1; done`,
    );
    await driver.create(exe('spawner', file));
    await driver.start('spawner');
    const out = await waitFor('the ready line', 10_000, async () => {
      const t = await consoleText('spawner');
      return t.includes(READY) ? t : undefined;
    });
    const sameGroup = Number(/same-group (\d+)/.exec(out)![1]);
    const ownGroup = Number(/own-group (\d+)/.exec(out)![1]);
    const run = await readRun('spawner');
    await waitFor('the child to leave the group', 5000, async () => (await readProcStat(ownGroup))?.pgrp === ownGroup);

    const r = await driver.stop('spawner', 2000);
    expect(r.outcome).toBe('graceful'); // sh dies of the SIGTERM
    expect(r.exit).toMatchObject({ signal: 'SIGTERM' });
    await waitFor('the same-group child to end', 2000, () => gone(sameGroup));
    expect(await gone(ownGroup)).toBe(false); // it left the group: stop cannot see it

    await driver.delete('spawner');
    await waitFor('the child that left the group to end', 2000, () => gone(ownGroup));
    expect(await gone(run.shimPid)).toBe(true);
    await expect(stat(path.join(driver.root, 'spawner'))).rejects.toThrow(/ENOENT/);
    expect(await driver.inspect('spawner')).toEqual({ name: 'spawner', uid: '', state: 'missing', driver: 'process' });
  });

  it('delete stops a running VM and leaves nothing', async () => {
    await driver.create(exe('doomed', await image('doomed.sh', SERVER)));
    await driver.start('doomed');
    const run = await readRun('doomed');
    await driver.delete('doomed');
    expect(await gone(run.pid)).toBe(true);
    expect(await gone(run.shimPid)).toBe(true);
    await expect(stat(path.join(driver.root, 'doomed'))).rejects.toThrow(/ENOENT/);
    await driver.delete('doomed'); // idempotent
  });

  it('tails and follows the console across output', async () => {
    await driver.create(exe('chatty', await image('chatty.sh', 'i=0\nwhile :; do i=$((i+1)); echo "line $i"; sleep 0.05; done')));
    await driver.start('chatty');
    const ac = new AbortController();
    let seen = '';
    const following = driver.consoleLog('chatty', {
      follow: ac.signal,
      onData: (c) => {
        seen += c.toString();
        if (seen.includes('line 8\n')) ac.abort();
      },
    });
    await following;
    expect(seen).toMatch(/^line 1\nline 2\n[\s\S]*line 8\n/);
    // The last 7 bytes of a log that keeps growing: the end of a "line N" line (N may have grown
    // to several digits under load, so only its shape is fixed).
    const tail = (await driver.consoleLog('chatty', { tailBytes: 7 })).toString();
    expect(tail).toMatch(/^(line \d|ine \d\d|ne \d{3}|e \d{4}|[ \d]\d{5})\n$/);
    expect(tail.length).toBe(7);
    await driver.delete('chatty');
  });

  it('is what a node enables for --hypervisor process (and auto), under <data-dir>/vms/process', async () => {
    const found = await enabledDrivers(root, 'process');
    expect(found.skipped).toEqual([]);
    expect(found.drivers.map((d) => [d.name, d.root])).toEqual([['process', path.join(root, 'vms', 'process')]]);
    expect((await enabledDrivers(root)).drivers.map((d) => d.name)).toContain('process');
    await expect(enabledDrivers(root, 'process,firecracker')).rejects.toThrow('unknown hypervisor driver "firecracker" (expected qemu or process)');
  });

  it('refuses what it cannot do, naming the VM', async () => {
    const file = await image('ok.sh', 'exit 0');
    await expect(driver.create(spec('kernel-vm', { image: { format: 'kernel', path: file } }))).rejects.toThrow('vm kernel-vm: create: the process driver runs executable images, not kernel');
    await expect(driver.create(exe('Bad_Name', file))).rejects.toThrow(VmDriverError);
    await expect(driver.create(exe('../escape', file))).rejects.toThrow(/DNS-1123/);
    await expect(driver.create(exe('no-image', path.join(images, 'missing')))).rejects.toThrow(/vm no-image: create: copying the executable .*missing: ENOENT/);
    await driver.create(exe('taken', file));
    await expect(driver.create({ ...exe('taken', file), uid: 'another-uid' })).rejects.toThrow('vm taken: create: a VM of this name with uid uid-taken exists; delete it first');
    await expect(driver.start('never-created')).rejects.toThrow('vm never-created: start: not created (no spec.json)');
    expect(await driver.stop('taken', 100)).toMatchObject({ outcome: 'not-running' });
    expect(await driver.inspect('taken')).toMatchObject({ state: 'stopped', detail: 'created, never started' });
    await driver.delete('taken');
  });
});

async function countProcesses(match: (cmdline: string) => boolean): Promise<number> {
  let n = 0;
  for (const d of await readdir('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const cmdline = await readFile(`/proc/${d}/cmdline`, 'utf8').catch(() => '');
    if (match(cmdline) && !(await gone(Number(d)))) n++;
  }
  return n;
}
