import { spawn } from 'node:child_process';
import { mkdir, readdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, ROOT, cli, removeDir, removeVms, requireBuild, tempDir, testEnv } from './helpers/daemon.js';

// `blixard up` (what `npm start` runs): an embedded node that applies examples/, shows progress
// until the VMs settle, and keeps serving. With QEMU it builds and boots the tiny Linux guest;
// without QEMU on PATH it runs the process examples and says why it skipped the other.

let work: string;
beforeAll(async () => {
  work = await tempDir();
});
afterAll(async () => {
  await removeVms(path.join(work, 'up'));
  await removeVms(path.join(work, 'up-noqemu'));
  await removeDir(work);
});

async function runUp(dataDir: string, env: Record<string, string> = {}) {
  requireBuild();
  const configHome = path.join(work, `config-${path.basename(dataDir)}`);
  const proc = spawn(process.execPath, [BIN, 'up', '--data-dir', dataDir, '--api', '127.0.0.1:0'], { cwd: ROOT, env: testEnv(configHome, env), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', resolve));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`up did not finish applying:\n${out}\n${err}`)), 240_000);
    proc.stderr.on('data', () => {
      if (err.includes('serving on')) {
        clearTimeout(t);
        resolve();
      }
    });
    void exited.then((code) => reject(new Error(`up exited with ${code}:\n${out}\n${err}`)));
  });
  return { proc, exited, out: () => out, err: () => err, configHome };
}

describe('blixard up', () => {
  it('builds and boots the tiny Linux guest and the process examples, reports them Running, and stops cleanly', async () => {
    const up = await runUp(path.join(work, 'up'));
    try {
      expect(up.out()).toContain('Image/hello created');
      expect(up.out()).toContain('Image/tiny-linux created');
      expect(up.err()).toContain('VirtualMachine/hello-1: Running');
      expect(up.err()).toContain('VirtualMachine/tiny-1: Running');
      // The CLI finds the embedded node through its record, with no flags.
      const s = JSON.parse(cli(['status', '-o', 'json'], { configHome: up.configHome }).stdout);
      expect(s.vms).toEqual({ total: 3, running: 3 });
      // The guest's web server answers through the hostfwd port of its manifest.
      const page = await fetch('http://127.0.0.1:18090/').then((r) => r.text());
      expect(page.length).toBeGreaterThan(0);
      up.proc.kill('SIGTERM');
      expect(await up.exited).toBe(0);
    } finally {
      up.proc.kill('SIGKILL'); // a failed assertion must not leave the daemon behind
    }
  });

  it('without QEMU on PATH runs the process examples and says why it skipped the QEMU one', async () => {
    // A PATH with everything /usr/bin has except QEMU.
    const bin = path.join(work, 'bin-noqemu');
    await mkdir(bin, { recursive: true });
    for (const f of await readdir('/usr/bin')) if (!f.startsWith('qemu')) await symlink(path.join('/usr/bin', f), path.join(bin, f)).catch(() => {});
    // (/bin is /usr/bin on Debian: it stays out of PATH)
    const up = await runUp(path.join(work, 'up-noqemu'), { PATH: bin });
    try {
      expect(up.err()).toMatch(/skipped examples\/tiny-linux: it needs format kernel \(qemu: .*qemu-system-x86/);
      expect(up.err()).toContain('VirtualMachine/hello-1: Running');
      expect(up.out()).not.toContain('tiny-linux');
      up.proc.kill('SIGTERM');
      expect(await up.exited, up.err()).toBe(0);
    } finally {
      up.proc.kill('SIGKILL');
    }
  });
});
