import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ResourceJson, VmStatus } from '../src/api/index.js';
import { ProcessDriver, driverRoot } from '../src/vm/index.js';
import { BIN, cli, removeDir, startDaemon, tempDir, testEnv, type Daemon } from './helpers/daemon.js';
import { until } from './helpers/until.js';

// VMs run for real through the node reconciler and the process driver: real processes, started
// detached, observed (never assumed), recreated, stopped, restarted, adopted, deleted.

let work: string;
let d: Daemon;
const dataDir = () => path.join(work, 'node');
const configHome = () => path.join(work, 'config');
const run = (args: string[]) => cli(['--server', d.api, '--token', d.token, ...args], { configHome: configHome(), cwd: work });
const driver = () => new ProcessDriver({ root: driverRoot(dataDir(), 'process') });

const SCRIPT = `#!/bin/sh
echo "hello from $PWD"
echo "port: $PORT_80"
echo "APP-READY"
trap 'echo stopping; exit 0' TERM
while :; do sleep 1; done
`;
const manifest = (vm: string, extra = '') => `apiVersion: blixard.dev/v1
kind: Image
metadata: { name: app }
spec: { path: ./app.sh, format: executable, readyPattern: APP-READY }
---
apiVersion: blixard.dev/v1
kind: VirtualMachine
metadata: { name: ${vm} }
spec:
  image: app
  memoryMiB: 64
  ports: [{ host: 18080, guest: 80 }]${extra}
`;

async function writeSet(text: string): Promise<string> {
  const dir = path.join(work, 'set');
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'app.sh'), SCRIPT, { mode: 0o755 });
  await writeFile(path.join(dir, 'vm.yaml'), text);
  return dir;
}

const WAIT_MS = 20_000;

const vmStatus = async (name: string) => (await d.client.get('VirtualMachine', name)) as ResourceJson & { status: VmStatus };
const phaseIs = (name: string, phase: string, gen?: number) => async () => {
  const r = await vmStatus(name);
  return r.status.phase === phase && (gen === undefined || r.status.observedGeneration === gen) ? r : undefined;
};
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  work = await tempDir();
  d = await startDaemon({ dataDir: dataDir(), configHome: configHome(), args: ['--bootstrap', '--hypervisor', 'process'] });
});
afterAll(async () => {
  await d?.stop();
  // The daemon leaves VMs running on purpose; the test cleans them up.
  for (const o of await driver().list().catch(() => [])) await driver().delete(o.name, 0).catch(() => {});
  await removeDir(work);
});

describe('process VMs through the reconciler', () => {
  it('runs a VM, is Running only after the ready line, and shows its console', async () => {
    const dir = await writeSet(manifest('web'));
    const r = run(['apply', '-f', dir, '--wait', '--timeout', '30s']);
    expect(r.code).toBe(0);
    const st = await vmStatus('web');
    expect(st.status).toMatchObject({ phase: 'Running', nodeId: d.nodeId, observedGeneration: 1 });
    expect(st.status.conditions.map((c) => `${c.type}=${c.status}`)).toEqual(['Scheduled=True', 'ImageReady=True', 'Running=True']);
    const o = await driver().inspect('web');
    expect(o.state).toBe('running');
    expect(alive(o.pid!)).toBe(true);
    const logs = run(['logs', 'vm', 'web']);
    expect(logs.stdout).toContain('APP-READY');
    expect(logs.stdout).toContain('port: 18080');
    expect(run(['logs', 'vm', 'web', '--tail', '1']).stdout).toBe('APP-READY\n');
    const status = JSON.parse(run(['status', '-o', 'json']).stdout);
    expect(status.vms).toEqual({ total: 1, running: 1 });
    expect(status.nodes[0].allocated).toEqual({ vcpus: 1, memoryMiB: 64 });
  });

  it('follows a console with logs -f: lines printed after the command started keep arriving until ^C', async () => {
    const dir = path.join(work, 'ticker');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'tick.sh'), '#!/bin/sh\necho TICK-READY\ni=0\nwhile :; do i=$((i+1)); echo "tick $i"; sleep 0.2; done\n', { mode: 0o755 });
    await writeFile(path.join(dir, 'vm.yaml'), 'apiVersion: blixard.dev/v1\nkind: Image\nmetadata: { name: ticker }\nspec: { path: ./tick.sh, format: executable, readyPattern: TICK-READY }\n---\napiVersion: blixard.dev/v1\nkind: VirtualMachine\nmetadata: { name: ticker }\nspec: { image: ticker, memoryMiB: 16 }\n');
    expect(run(['apply', '-f', dir, '--wait', '--timeout', '30s']).code).toBe(0);
    const follower = spawn(process.execPath, [BIN, '--server', d.api, '--token', d.token, 'logs', 'vm', 'ticker', '-f'], { env: testEnv(configHome()), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    follower.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number | null>((resolve) => follower.once('exit', (code) => resolve(code)));
    const ticks = () => [...out.matchAll(/^tick (\d+)$/gm)].map((m) => Number(m[1]));
    await until('some ticks', async () => ticks().length >= 2, WAIT_MS);
    const first = Math.max(...ticks());
    await until('ticks printed later', async () => Math.max(...ticks()) >= first + 5, WAIT_MS);
    follower.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(run(['delete', 'vm', 'ticker']).code).toBe(0);
  });

  it('recreates on a memory change, restarts a killed VM, and stops and starts with spec.state', async () => {
    const before = await driver().inspect('web');
    const dir = await writeSet(manifest('web').replace('memoryMiB: 64', 'memoryMiB: 96'));
    expect(run(['apply', '-f', dir, '--wait', '--timeout', '30s']).code).toBe(0);
    const after = await driver().inspect('web');
    expect(after.pid).not.toBe(before.pid);
    expect(alive(before.pid!)).toBe(false);
    expect((await vmStatus('web')).status.observedGeneration).toBe(2);

    process.kill(after.pid!, 'SIGKILL');
    const restarted = await until('the killed VM to come back', async () => {
      const o = await driver().inspect('web');
      return o.state === 'running' && o.pid !== after.pid ? o : undefined;
    }, WAIT_MS);
    expect(alive(restarted.pid!)).toBe(true);
    await until('Running again', phaseIs('web', 'Running', 2), WAIT_MS);

    await writeSet(manifest('web', '\n  state: Stopped').replace('memoryMiB: 64', 'memoryMiB: 96'));
    expect(run(['apply', '-f', dir, '--wait', '--timeout', '30s']).code).toBe(0);
    expect((await vmStatus('web')).status.phase).toBe('Stopped');
    expect(alive(restarted.pid!)).toBe(false);
    expect((await driver().inspect('web')).state).toBe('stopped');

    await writeSet(manifest('web').replace('memoryMiB: 64', 'memoryMiB: 96'));
    expect(run(['apply', '-f', dir, '--wait', '--timeout', '30s']).code).toBe(0);
    expect((await driver().inspect('web')).state).toBe('running');
  });

  it('leaves VMs running when the daemon stops or dies, and the next daemon adopts them', async () => {
    const o = await driver().inspect('web');
    expect(await d.stop()).toBe(0);
    expect(alive(o.pid!)).toBe(true);
    d = await startDaemon({ dataDir: dataDir(), configHome: configHome(), args: ['--hypervisor', 'process'] });
    await until('Running after adoption', phaseIs('web', 'Running'), WAIT_MS);
    expect((await driver().inspect('web')).pid).toBe(o.pid);

    await d.kill();
    expect(alive(o.pid!)).toBe(true);
    d = await startDaemon({ dataDir: dataDir(), configHome: configHome(), args: ['--hypervisor', 'process'] });
    await until('Running after adoption', phaseIs('web', 'Running'), WAIT_MS);
    const again = await driver().list();
    expect(again.filter((x) => x.state === 'running').map((x) => [x.name, x.pid])).toEqual([['web', o.pid]]);
  });

  it('shows Failed for a VM that exits with an error under restartPolicy Never', async () => {
    const dir = path.join(work, 'failing');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'bad.sh'), '#!/bin/sh\necho "about to fail"\nexit 3\n', { mode: 0o755 });
    await writeFile(
      path.join(dir, 'vm.yaml'),
      `apiVersion: blixard.dev/v1\nkind: Image\nmetadata: { name: bad }\nspec: { path: ./bad.sh, format: executable, readyPattern: NEVER-PRINTED }\n---\napiVersion: blixard.dev/v1\nkind: VirtualMachine\nmetadata: { name: crasher }\nspec: { image: bad, restartPolicy: Never }\n`,
    );
    const r = run(['apply', '-f', dir, '--wait', '--timeout', '30s']);
    expect(r.code).toBe(1);
    const st = await until('Failed', phaseIs('crasher', 'Failed'), WAIT_MS);
    expect(st.status.message).toBe('exited (exit code 3); restartPolicy Never');
  });

  it('deletes VMs and leaves nothing behind', async () => {
    const o = await driver().inspect('web');
    expect(run(['delete', 'vm', 'web']).code).toBe(0);
    expect(run(['delete', 'vm', 'crasher']).code).toBe(0);
    await until('the VMs to be removed', async () => (await driver().list()).length === 0, WAIT_MS);
    expect(alive(o.pid!)).toBe(false);
    expect(existsSync(path.join(driverRoot(dataDir(), 'process'), 'web'))).toBe(false);
  });
});
