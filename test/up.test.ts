import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, ROOT, cli, removeDir, removeVms, requireBuild, tempDir, testEnv } from './helpers/daemon.js';

// `blixard up` (what `npm start` runs): an embedded node that applies examples/ and keeps serving.

let work: string;
beforeAll(async () => {
  work = await tempDir();
});
afterAll(async () => {
  await removeVms(path.join(work, 'up'));
  await removeDir(work);
});

describe('blixard up', () => {
  it('brings up an embedded node, applies examples/, reports honestly, and stops cleanly on SIGTERM', async () => {
    requireBuild();
    const configHome = path.join(work, 'config');
    const proc = spawn(process.execPath, [BIN, 'up', '--data-dir', path.join(work, 'up'), '--api', '127.0.0.1:0'], { cwd: ROOT, env: testEnv(configHome), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => proc.once('exit', resolve));
    try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`up did not finish applying:\n${out}\n${err}`)), 30_000);
      const check = () => {
        if (err.includes('serving on')) {
          clearTimeout(t);
          resolve();
        }
      };
      proc.stderr.on('data', check);
      void exited.then((code) => reject(new Error(`up exited with ${code}:\n${out}\n${err}`)));
    });
    expect(out).toContain('Image/hello created');
    expect(out).toContain('VirtualMachine/hello-1 created');
    expect(err).toContain('VirtualMachine/hello-1: Running');
    // The CLI finds the embedded node through its record, with no flags.
    const s = JSON.parse(cli(['status', '-o', 'json'], { configHome }).stdout);
    expect(s.vms.running).toBeGreaterThanOrEqual(2);
      proc.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      proc.kill('SIGKILL'); // a failed assertion must not leave the daemon behind
    }
  });
});
