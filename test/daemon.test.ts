import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, type ApplyResponse, type ImageStatus, type VmStatus, type WatchEvent } from '../src/api/index.js';
import { blake3File } from '../src/images/index.js';
import { imageHashing, nodeCheck } from '../src/cli/manifests.js';
import { ManifestSetError, formatError, loadManifests, type LoadedSet } from '../src/manifest/index.js';
import { BIN, cli, removeDir, removeVms, startDaemon, tempDir, testEnv, type Daemon } from './helpers/daemon.js';
import { until } from './helpers/until.js';

// One real daemon (real process, Iroh node, loopback API) and the compiled CLI against it.

let work: string;
let d: Daemon;
let conn: string[];
const run = (args: string[], input?: string) => {
  const r = cli([...conn, ...args], { configHome: path.join(work, 'config'), cwd: work, ...(input !== undefined ? { input } : {}) });
  if (process.env.DEBUG_CLI && r.code !== 0) console.log('CLI', args.join(' '), r.code, r.stderr);
  return r;
};

const image = (name: string, file = 'app.sh') => `apiVersion: blixard.dev/v1
kind: Image
metadata: { name: ${name} }
spec: { path: ./${file}, format: executable, readyPattern: ready }
`;
const vm = (name: string, extra = '') => `apiVersion: blixard.dev/v1
kind: VirtualMachine
metadata: { name: ${name}, labels: { app: demo } }
spec:
  image: app${extra}
`;
const docs = (...d: string[]) => d.join('---\n');

async function writeSet(dir: string, files: Record<string, string>): Promise<string> {
  const abs = path.join(work, dir);
  await removeDir(abs);
  await mkdir(abs, { recursive: true });
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(abs, name), text, { mode: 0o755 });
  return dir;
}

function results(stdout: string): string[] {
  return (JSON.parse(stdout) as ApplyResponse).results.map((r) => `${r.kind}/${r.name}=${r.action}`).sort();
}

beforeAll(async () => {
  work = await tempDir();
  // Many small VMs on a 2-core machine: offer more vcpus than there are (overcommit).
  d = await startDaemon({ dataDir: path.join(work, 'node'), configHome: path.join(work, 'config'), args: ['--bootstrap', '--vcpus', '64'] });
  conn = ['--server', d.api, '--token', d.token];
  await writeFile(path.join(work, 'app.sh'), '#!/bin/sh\necho ready\nexec sleep 100000\n', { mode: 0o755 });
});

afterAll(async () => {
  if (process.env.DEBUG_DAEMON) console.log(d?.stderr().split('\n').filter((l) => !l.includes('"level":30')).slice(-40).join('\n'));
  await d?.stop();
  await removeVms(path.join(work, 'node'));
  await removeDir(work);
});

describe('apply', () => {
  it('applies nothing when one document of the set is bad, and says where', async () => {
    const dir = await writeSet('bad-set', {
      'app.sh': '#!/bin/sh\necho ready\n',
      'a.yaml': docs(image('app'), vm('good-1')),
      'b.yaml': docs(vm('good-2'), vm('bad-1', '\n  vcpus: two')),
    });
    const r = run(['apply', '-f', dir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${path.join(dir, 'b.yaml')}:12:10 VirtualMachine/bad-1 spec.vcpus: expected a positive integer, got "two"`);
    expect(r.stderr).toContain('nothing was applied');
    expect(await d.client.list('VirtualMachine')).toEqual([]);
    expect(await d.client.list('Image')).toEqual([]);
  });

  it('is idempotent: a second apply is all unchanged, also when defaults are left out or spelled out', async () => {
    const dir = await writeSet('idem', { 'app.sh': '#!/bin/sh\necho ready\n', 'set.yaml': docs(image('app'), vm('idem-1')) });
    expect(results(run(['apply', '-f', dir, '-o', 'json']).stdout)).toEqual(['Image/app=created', 'VirtualMachine/idem-1=created']);
    const before = await d.client.get('VirtualMachine', 'idem-1');
    expect(results(run(['apply', '-f', dir, '-o', 'json']).stdout)).toEqual(['Image/app=unchanged', 'VirtualMachine/idem-1=unchanged']);
    // The same VM with every default written out is the same desired state.
    await writeFile(
      path.join(work, dir, 'set.yaml'),
      docs(image('app'), vm('idem-1', '\n  vcpus: 1\n  memoryMiB: 256\n  state: Running\n  restartPolicy: Always\n  ports: []')),
    );
    expect(results(run(['apply', '-f', dir, '-o', 'json']).stdout)).toEqual(['Image/app=unchanged', 'VirtualMachine/idem-1=unchanged']);
    const after = await d.client.get('VirtualMachine', 'idem-1');
    expect(after.metadata).toEqual(before.metadata);
    expect(run(['diff', '-f', dir]).code).toBe(0);
  });

  it('bumps generation for a spec change but not for a label change; resourceVersion for both', async () => {
    const dir = await writeSet('gen', { 'app.sh': '#!/bin/sh\necho ready\n', 'set.yaml': docs(image('app'), vm('gen-1')) });
    run(['apply', '-f', dir]);
    const v1 = (await d.client.get('VirtualMachine', 'gen-1')).metadata;
    await writeFile(path.join(work, dir, 'set.yaml'), docs(image('app'), vm('gen-1', '\n  memoryMiB: 512')));
    expect(run(['apply', '-f', dir]).stdout).toContain('VirtualMachine/gen-1 configured');
    const v2 = (await d.client.get('VirtualMachine', 'gen-1')).metadata;
    expect(v2.generation).toBe(v1.generation + 1);
    expect(v2.resourceVersion).toBeGreaterThan(v1.resourceVersion);
    expect(v2.uid).toBe(v1.uid);
    await writeFile(path.join(work, dir, 'set.yaml'), docs(image('app'), vm('gen-1', '\n  memoryMiB: 512').replace('app: demo', 'app: other')));
    run(['apply', '-f', dir]);
    const v3 = (await d.client.get('VirtualMachine', 'gen-1')).metadata;
    expect(v3.generation).toBe(v2.generation);
    expect(v3.resourceVersion).toBeGreaterThan(v2.resourceVersion);
  });

  it('--dry-run reports and changes nothing', async () => {
    const dir = await writeSet('dry', { 'app.sh': '#!/bin/sh\necho ready\n', 'set.yaml': docs(image('app'), vm('dry-1')) });
    const r = run(['apply', '-f', dir, '--dry-run']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('VirtualMachine/dry-1 created (dry run)');
    await expect(d.client.get('VirtualMachine', 'dry-1')).rejects.toMatchObject({ code: 'not-found' });
  });

  it('reads manifests from stdin with -f -', async () => {
    const r = run(['apply', '-f', '-', '-o', 'json'], docs(image('app'), vm('stdin-1')));
    expect(r.code).toBe(0);
    expect(results(r.stdout)).toContain('VirtualMachine/stdin-1=created');
    // Errors in stdin are located like errors in files, and nothing is applied.
    const bad = run(['apply', '-f', '-'], docs(image('app'), vm('stdin-2', '\n  vcpus: two')));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('<stdin>:11:10 VirtualMachine/stdin-2 spec.vcpus: expected a positive integer, got "two"');
    await expect(d.client.get('VirtualMachine', 'stdin-2')).rejects.toMatchObject({ code: 'not-found' });
  });
});

describe('diff', () => {
  it('labels each change with its effect on a running VM, as a unified diff and as JSON patches', async () => {
    const dir = await writeSet('diff', { 'app.sh': '#!/bin/sh\necho ready\n', 'set.yaml': docs(image('app'), vm('df-1'), vm('df-2')) });
    run(['apply', '-f', dir]);
    await writeFile(path.join(work, dir, 'set.yaml'), docs(image('app'), vm('df-1', '\n  memoryMiB: 1024'), vm('df-2', '\n  kernelArgs: quiet'), vm('df-3')));
    const text = run(['diff', '-f', dir]);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain('# VirtualMachine/df-1: configure, recreate (recreate: spec.memoryMiB)');
    expect(text.stdout).toContain('# VirtualMachine/df-2: configure, restart (restart: spec.kernelArgs)');
    expect(text.stdout).toContain('# VirtualMachine/df-3: create');
    expect(text.stdout).toContain('--- stored/VirtualMachine/df-1');
    expect(text.stdout).toMatch(/^-\s+memoryMiB: 256$/m);
    expect(text.stdout).toMatch(/^\+\s+memoryMiB: 1024$/m);
    expect(text.stdout).not.toContain('\x1b['); // no colour off a TTY
    const patches = JSON.parse(run(['diff', '-f', dir, '-o', 'json-patch']).stdout) as { name: string; action: string; effect: string; patch: unknown[] }[];
    expect(patches.map((p) => `${p.name}:${p.action}:${p.effect}`).sort()).toEqual(['df-1:configure:recreate', 'df-2:configure:restart', 'df-3:create:create']);
    expect(patches.find((p) => p.name === 'df-1')!.patch).toEqual([{ op: 'replace', path: '/spec/memoryMiB', value: 1024 }]);
    const bad = await writeSet('diff-bad', { 'set.yaml': vm('Bad') });
    expect(run(['diff', '-f', bad]).code).toBe(2);
    // On a terminal (script(1) gives the CLI a pty) it is coloured, unless NO_COLOR is set.
    const onTty = (env: Record<string, string>) => {
      const cmd = [process.execPath, BIN, ...conn, 'diff', '-f', dir].map((a) => `'${a}'`).join(' ');
      const e = testEnv(path.join(work, 'config'), env);
      delete e.NO_COLOR;
      return spawnSync('script', ['-qec', cmd, '/dev/null'], { cwd: work, env: { ...e, ...env, TERM: 'xterm' }, encoding: 'utf8' }).stdout;
    };
    expect(onTty({})).toMatch(/\x1b\[32m\+\s+memoryMiB: 1024/);
    expect(onTty({ NO_COLOR: '1' })).not.toContain('\x1b[');
  });
});

describe('prune', () => {
  it('removes only what the previous apply of the same applyset created', async () => {
    const a = await writeSet('prune-a', { 'app.sh': '#!/bin/sh\necho ready\n', 'set.yaml': docs(image('app'), vm('pa-1'), vm('pa-2')) });
    const b = await writeSet('prune-b', { 'set.yaml': vm('pb-1') });
    expect(run(['apply', '-f', a, '--applyset', 'team-a']).code).toBe(0);
    expect(run(['apply', '-f', b, '--applyset', 'team-b']).code).toBe(0);
    await writeFile(path.join(work, a, 'set.yaml'), docs(image('app'), vm('pa-1')));
    const diff = run(['diff', '-f', a, '--prune', '--applyset', 'team-a']);
    expect(diff.code).toBe(1);
    expect(diff.stdout).toContain('# VirtualMachine/pa-2: prune (delete)');
    const r = run(['apply', '-f', a, '--prune', '--applyset', 'team-a', '-o', 'json']);
    expect(r.code).toBe(0);
    expect(results(r.stdout)).toEqual(['Image/app=unchanged', 'VirtualMachine/pa-1=unchanged', 'VirtualMachine/pa-2=pruned']);
    const names = (await d.client.list('VirtualMachine')).map((x) => x.metadata.name);
    expect(names).toContain('pb-1'); // another applyset's resource is not touched
    expect(names).toContain('pa-1');
    expect(names).not.toContain('pa-2');
  });

  it('refuses to prune more than --max-prune and prints what it would delete', async () => {
    const dir = await writeSet('maxprune', { 'app.sh': '#!/bin/sh\necho ready\n', 'set.yaml': docs(image('app'), vm('mp-1'), vm('mp-2'), vm('mp-3')) });
    run(['apply', '-f', dir, '--applyset', 'mp']);
    await writeFile(path.join(work, dir, 'set.yaml'), docs(image('app')));
    const r = run(['apply', '-f', dir, '--applyset', 'mp', '--prune', '--max-prune', '2']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('VirtualMachine/mp-1 would be pruned');
    expect(r.stderr).toContain('more than --max-prune 2');
    expect((await d.client.list('VirtualMachine')).map((x) => x.metadata.name)).toEqual(expect.arrayContaining(['mp-1', 'mp-2', 'mp-3']));
    expect(run(['apply', '-f', dir, '--applyset', 'mp', '--prune', '--max-prune', '3']).code).toBe(0);
  });

  it('prunes at most 10 without --max-prune', async () => {
    const many = (n: number) => docs(image('app'), ...Array.from({ length: n }, (_, i) => vm(`md-${i}`)));
    const dir = await writeSet('maxprune-default', { 'app.sh': '#!/bin/sh\necho ready\n', 'set.yaml': many(11) });
    expect(run(['apply', '-f', dir, '--applyset', 'md']).code).toBe(0);
    await writeFile(path.join(work, dir, 'set.yaml'), many(0));
    const r = run(['apply', '-f', dir, '--applyset', 'md', '--prune']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('more than --max-prune 10');
    expect((await d.client.list('VirtualMachine')).filter((x) => x.metadata.name.startsWith('md-'))).toHaveLength(11);
    await writeFile(path.join(work, dir, 'set.yaml'), many(1));
    expect(run(['apply', '-f', dir, '--applyset', 'md', '--prune']).code).toBe(0);
    expect((await d.client.list('VirtualMachine')).filter((x) => x.metadata.name.startsWith('md-')).map((x) => x.metadata.name)).toEqual(['md-0']);
  });
});

describe('saved plans and conflicts', () => {
  it('applies a saved plan exactly once', async () => {
    const dir = await writeSet('plan', { 'app.sh': '#!/bin/sh\necho ready\n', 'set.yaml': docs(image('app'), vm('plan-1')) });
    const diff = run(['diff', '-f', dir, '--out', 'plan.json']);
    expect(diff.code).toBe(1);
    const first = run(['apply', '--plan', 'plan.json']);
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('VirtualMachine/plan-1 created');
    const again = run(['apply', '--plan', 'plan.json']);
    expect(again.code).toBe(4);
  });

  it('refuses a saved plan with exit 4 after a write to what it read, and applies nothing of it', async () => {
    const dir = await writeSet('plan2', { 'app.sh': '#!/bin/sh\necho ready\n', 'set.yaml': docs(image('app'), vm('p2-1'), vm('p2-2')) });
    run(['apply', '-f', dir]);
    await writeFile(path.join(work, dir, 'set.yaml'), docs(image('app'), vm('p2-1', '\n  memoryMiB: 300'), vm('p2-2', '\n  memoryMiB: 300')));
    expect(run(['diff', '-f', dir, '--out', 'plan2.json']).code).toBe(1);
    // Someone else changes one of the resources the plan read.
    const other = await writeSet('plan2-other', { 'set.yaml': vm('p2-2', '\n  memoryMiB: 999') });
    expect(run(['apply', '-f', other]).code).toBe(0);
    const r = run(['apply', '--plan', 'plan2.json']);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('VirtualMachine/p2-2');
    expect(((await d.client.get('VirtualMachine', 'p2-1')).spec as { memoryMiB?: number }).memoryMiB).toBeUndefined();
    expect(((await d.client.get('VirtualMachine', 'p2-2')).spec as { memoryMiB?: number }).memoryMiB).toBe(999);
  });

  it('lets one of many concurrent conflicting applies win; the others get a conflict (exit 4)', async () => {
    const dir = await writeSet('race', { 'app.sh': '#!/bin/sh\necho ready\n', 'set.yaml': image('app') });
    expect(run(['apply', '-f', dir]).code).toBe(0);
    const set = (mem: number) => ({
      desired: [{ kind: 'VirtualMachine' as const, name: 'race-1', labels: {}, spec: { image: 'app', memoryMiB: mem } }],
      applyset: 'race',
      prune: false,
      maxPrune: 0,
      dryRun: false,
    });
    await d.client.apply(set(100));
    const outcomes = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => d.client.apply(set(200 + i))));
    const won = outcomes.filter((o) => o.status === 'fulfilled');
    const lost = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
    expect(won.length).toBeGreaterThanOrEqual(1);
    for (const l of lost) {
      expect(l.reason).toBeInstanceOf(ApiError);
      expect((l.reason as ApiError).code).toBe('conflict');
      expect((l.reason as ApiError).exitCode).toBe(4);
    }
    // Every winner was applied at its own log index: no two writes saw the same version.
    const indices = won.map((o) => (o as PromiseFulfilledResult<ApplyResponse>).value.index);
    expect(new Set(indices).size).toBe(indices.length);
    const final = await d.client.get('VirtualMachine', 'race-1');
    expect(final.metadata.resourceVersion).toBe(Math.max(...(indices as number[])));
  });
});

describe('conflicts between two operators', () => {
  it('two applies planned from the same state, run at once: one applies, the other exits 4 and changes nothing', async () => {
    const dir = await writeSet('two-ops', { 'app.sh': '#!/bin/sh\necho ready\n', 'set.yaml': docs(image('app'), vm('two-1')) });
    expect(run(['apply', '-f', dir]).code).toBe(0);
    for (const [plan, mem] of [['op-a.json', 300], ['op-b.json', 400]] as const) {
      await writeFile(path.join(work, dir, 'set.yaml'), docs(image('app'), vm('two-1', `\n  memoryMiB: ${mem}`)));
      expect(run(['diff', '-f', dir, '--out', plan]).code).toBe(1);
    }
    const applyPlan = (plan: string) =>
      new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const p = spawn(process.execPath, [BIN, ...conn, 'apply', '--plan', plan], { cwd: work, env: testEnv(path.join(work, 'config')) });
        let stderr = '';
        p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
        p.on('close', (code) => resolve({ code, stderr }));
      });
    const [a, b] = await Promise.all([applyPlan('op-a.json'), applyPlan('op-b.json')]);
    expect([a.code, b.code].sort()).toEqual([0, 4]);
    const loser = a.code === 4 ? a : b;
    expect(loser.stderr).toContain('VirtualMachine/two-1');
    const mem = ((await d.client.get('VirtualMachine', 'two-1')).spec as { memoryMiB: number }).memoryMiB;
    expect(mem).toBe(a.code === 0 ? 300 : 400);
  });
});

describe('unreachable and unauthorized', () => {
  it('exits 3 when no node answers and 5 for a wrong token', async () => {
    const gone = cli(['--server', 'http://127.0.0.1:9', '--token', 'x', 'get', 'vms'], { configHome: path.join(work, 'config') });
    expect(gone.code).toBe(3);
    expect(gone.stderr).toMatch(/127\.0\.0\.1:9/);
    const denied = cli(['--server', d.api, '--token', 'not-the-token', 'get', 'vms'], { configHome: path.join(work, 'config') });
    expect(denied.code).toBe(5);
  });
});

describe('images', () => {
  it('uploads image files into the Iroh blob store and records their BLAKE3', async () => {
    const dir = await writeSet('img', { 'disk.bin': 'x'.repeat(3 * 1024 * 1024), 'set.yaml': image('blobby', 'disk.bin').replace('executable', 'raw') });
    expect(run(['apply', '-f', dir]).code).toBe(0);
    const want = await blake3File(path.join(work, dir, 'disk.bin'));
    const st = (await d.client.get('Image', 'blobby')).status as ImageStatus;
    expect(st.hash).toBe(want.hash);
    expect(st.size).toBe(3 * 1024 * 1024);
    expect(st.holders).toEqual([d.nodeId]);
    expect(await d.client.hasBlob(want.hash)).toBe(true);
    // New content under the same path is a change.
    await writeFile(path.join(work, dir, 'disk.bin'), 'y'.repeat(1024));
    expect(run(['apply', '-f', dir]).stdout).toContain('Image/blobby configured');
  });

  it('refuses an upload whose bytes do not match the announced hash, and stores nothing', async () => {
    const file = path.join(work, 'liar.bin');
    await writeFile(file, 'these bytes are not what the hash says');
    const claimed = `blake3:${createHash('sha256').update('something else').digest('hex')}`;
    await expect(d.client.putBlob(claimed, file)).rejects.toMatchObject({ code: 'invalid' });
    expect(await d.client.hasBlob(claimed)).toBe(false);
    const real = await blake3File(file);
    expect(await d.client.hasBlob(real.hash)).toBe(false);
  });

  it('refuses a hash pin that does not match the file, before anything is sent', async () => {
    const dir = await writeSet('pin', {
      'app.sh': '#!/bin/sh\necho ready\n',
      'set.yaml': image('pinned').replace('readyPattern: ready', `readyPattern: ready, hash: "blake3:${'0'.repeat(64)}"`),
    });
    const r = run(['apply', '-f', dir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Image\/pinned spec\.hash: expected the image content to match the pinned blake3:0{64}, got blake3:[0-9a-f]{64}/);
    await expect(d.client.get('Image', 'pinned')).rejects.toMatchObject({ code: 'not-found' });
  });
});

describe('get, describe, delete', () => {
  it('prints resources in the SPEC shapes and exits 1 for a missing one', async () => {
    const dir = await writeSet('get', { 'app.sh': '#!/bin/sh\necho ready\n', 'set.yaml': docs(image('app'), vm('get-1')) });
    run(['apply', '-f', dir]);
    // Placement follows the apply (the leader's scheduling pass): wait for it.
    for (let i = 0; i < 100 && !((await d.client.get('VirtualMachine', 'get-1')).status as VmStatus).nodeId; i++) await new Promise((r) => setTimeout(r, 50));
    const one = JSON.parse(run(['get', 'vm', 'get-1', '-o', 'json']).stdout);
    expect(one).toMatchObject({ apiVersion: 'blixard.dev/v1', kind: 'VirtualMachine', metadata: { name: 'get-1', labels: { app: 'demo' } }, spec: { image: 'app' } });
    expect(Object.keys(one.metadata).sort()).toEqual(['creationTimestamp', 'generation', 'labels', 'name', 'resourceVersion', 'uid']);
    expect(Object.keys(one.status).sort()).toEqual(['conditions', 'message', 'nodeId', 'observedGeneration', 'phase']);
    // Placed on the only node; the phase is whatever the node observes, never assumed.
    expect(one.status.nodeId).toBe(d.nodeId);
    expect(run(['get', 'virtualmachines', '-o', 'name']).stdout).toContain('VirtualMachine/get-1');
    expect(run(['get', 'vms']).stdout).toMatch(/^NAME\s+PHASE\s+NODE/);
    expect(run(['get', 'vm', 'nope']).code).toBe(1);
    expect(run(['get', 'flavours']).code).toBe(2);
    const desc = run(['describe', 'vm', 'get-1']);
    expect(desc.stdout).toContain('Conditions:');
    expect(desc.stdout).toMatch(/Normal\s+Created/);
  });

  it('get -l: only the resources whose labels match, filtered by the node; a bad selector changes nothing and says why', async () => {
    const dir = await writeSet('sel', { 'app.sh': '#!/bin/sh\necho ready\n', 'set.yaml': docs(image('app'), vm('sel-1'), vm('sel-2').replace('app: demo', 'app: other')) });
    expect(run(['apply', '-f', dir]).code).toBe(0);
    const names = (args: string[]) => run(['get', 'vms', ...args, '-o', 'name']).stdout.trim().split('\n').filter((l) => l.includes('sel-'));
    expect(names(['-l', 'app=other'])).toEqual(['VirtualMachine/sel-2']);
    expect(names(['-l', 'app in (demo,other)'])).toEqual(['VirtualMachine/sel-1', 'VirtualMachine/sel-2']);
    expect(names(['-l', 'app!=other'])).toEqual(['VirtualMachine/sel-1']);
    expect(run(['get', 'vms', '-l', 'app=nobody']).stderr).toContain('No VirtualMachine resources found.');
    // (other tests of this file leave VMs labelled too: only this test's count)
    expect((await d.client.list('VirtualMachine', { selector: 'app=other' })).map((r) => r.metadata.name).filter((n) => n.startsWith('sel-'))).toEqual(['sel-2']);
    const bad = run(['get', 'vms', '-l', 'app=a b']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/label selector "app=a b": "app=a b": expected a label value/);
    expect(run(['get', 'vm', 'sel-1', '-l', 'app=demo']).code).toBe(2);
    // The API checks what it is sent, whoever sends it.
    await expect(d.client.list('VirtualMachine', { selector: 'app==' + '(' })).rejects.toMatchObject({ code: 'invalid' });
  });

  it('watch: the selected VMs, SYNCED, then each change as it happens (a new VM to Running, a delete); a bad selector is refused before anything', async () => {
    const events: WatchEvent[] = [];
    const stop = new AbortController();
    const watching = d.client.watch('VirtualMachine', { selector: 'app=watched', signal: stop.signal }, (e) => events.push(e));
    // until(), and on a timeout the events seen so far.
    const untilEvents = (what: string, f: () => boolean) =>
      until(what, f, 30_000, 20).catch((err: Error) => {
        throw new Error(`${err.message}: ${JSON.stringify(events.map((e) => (e.type === 'SYNCED' ? e.type : [e.type, (e.object.status as VmStatus).phase])))}`);
      });
    await untilEvents('SYNCED', () => events.length > 0);
    expect(events).toEqual([{ type: 'SYNCED' }]); // nothing selected yet
    const dir = await writeSet('watched', { 'app.sh': '#!/bin/sh\necho ready\nexec sleep 100000\n', 'set.yaml': docs(image('app'), vm('watch-1').replace('app: demo', 'app: watched'), vm('watch-2')) });
    expect(run(['apply', '-f', dir]).code).toBe(0);
    const of = (name: string) => events.flatMap((e) => (e.type !== 'SYNCED' && e.object.metadata.name === name ? [e] : []));
    await untilEvents('watch-1 Running', () => of('watch-1').some((e) => (e.object.status as VmStatus).phase === 'Running'));
    expect(of('watch-1')[0]!.type).toBe('ADDED');
    expect(of('watch-1').slice(1).every((e) => e.type === 'MODIFIED')).toBe(true);
    expect(of('watch-2')).toEqual([]); // not selected
    // Only changes are sent: no two events in a row carry the same form.
    const forms = of('watch-1').map((e) => JSON.stringify(e.object));
    expect(new Set(forms).size).toBe(forms.length);
    expect(run(['delete', 'vm', 'watch-1']).code).toBe(0);
    await untilEvents('watch-1 DELETED', () => of('watch-1').some((e) => e.type === 'DELETED'));
    stop.abort();
    await watching;
    await expect(d.client.watch('VirtualMachine', { selector: 'app==(', signal: new AbortController().signal }, () => {})).rejects.toMatchObject({ code: 'invalid' });

    // The CLI: `get -w` prints what is there, then a line per change, until interrupted.
    const watchCli = (format: string[]) => {
      const p = spawn(process.execPath, [BIN, ...conn, 'get', 'vms', '-l', 'app=watched', '-w', ...format], { env: testEnv(path.join(work, 'config')), stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (c: Buffer) => (out += c.toString()));
      const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
      return { p, out: () => out, exited };
    };
    const names = watchCli(['-o', 'name']);
    const table = watchCli([]);
    await new Promise((r) => setTimeout(r, 1500)); // both have listed (nothing selected) and wait
    expect(run(['apply', '-f', dir]).code).toBe(0); // watch-1 again
    await untilEvents('the CLI watches to see watch-1 Running', () => / Running /.test(table.out()) && names.out().includes('MODIFIED VirtualMachine/watch-1'));
    expect(names.out().split('\n')[0]).toBe('ADDED VirtualMachine/watch-1');
    expect(table.out().split('\n')[0]).toMatch(/^NAME\s+PHASE\s+NODE/);
    expect(table.out().match(/^NAME/gm)).toHaveLength(1); // one header, then rows
    for (const w of [names, table]) w.p.kill('SIGINT');
    expect(await names.exited).toBe(0);
    expect(await table.exited).toBe(0);
    expect(run(['get', 'nodes', '-w']).code).toBe(2);
  });

  it('refuses to delete an Image a VM still uses, and deletes by file or by name', async () => {
    const dir = await writeSet('del', { 'app.sh': '#!/bin/sh\necho ready\n', 'set.yaml': docs(image('app'), vm('del-1')) });
    run(['apply', '-f', dir]);
    const inUse = run(['delete', 'image', 'app']);
    expect(inUse.code).toBe(2);
    expect(inUse.stderr).toContain('Image/app is still used by VirtualMachine/');
    expect(run(['delete', 'vm', 'del-1']).stdout).toContain('VirtualMachine/del-1 deleted');
    expect(run(['delete', 'vm', 'del-1']).code).toBe(1);
  });
});

describe('API and CLI surface', () => {
  it('apply --wait exits 1 at once for a VM that cannot be scheduled, instead of pretending', async () => {
    const dir = await writeSet('wait', { 'app.sh': '#!/bin/sh\necho ready\n', 'set.yaml': docs(image('app'), vm('wait-1', '\n  placement: { nodeSelector: { zone: nowhere } }')) });
    const t0 = Date.now();
    const r = run(['apply', '-f', dir, '--wait', '--timeout', '30s']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('VirtualMachine/wait-1 cannot be scheduled');
    expect(Date.now() - t0).toBeLessThan(15_000);
  });

  it('validates what arrives over the API itself, not only what the CLI sends', async () => {
    const bad = { desired: [{ kind: 'VirtualMachine' as const, name: 'Bad_Name', labels: {}, spec: { image: 'app', vcpus: -1 } }], applyset: 'x', prune: false, maxPrune: 0, dryRun: false };
    const err = await d.client.apply(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).code).toBe('invalid');
    expect((err as ApiError).message).toContain('metadata.name: expected a DNS-1123 label');
    expect((err as ApiError).message).toContain('spec.vcpus: expected a positive integer, got -1');
    const missing = { desired: [{ kind: 'VirtualMachine' as const, name: 'orphan', labels: {}, spec: { image: 'no-such-image' } }], applyset: 'x', prune: false, maxPrune: 0, dryRun: false };
    await expect(d.client.apply(missing)).rejects.toMatchObject({ code: 'invalid', message: expect.stringContaining('no-such-image') });
  });

  it("the node's schema check (apply, diff) finds exactly what the local one (validate) finds, for every bad fixture", async () => {
    // apply and diff leave zod to the node (POST /v1/validate) and map its findings to lines here.
    const fixtures = path.join(import.meta.dirname, 'fixtures', 'bad');
    const inputs = (await import('node:fs')).readdirSync(fixtures).filter((f) => /\.(ya?ml|json)$/.test(f));
    expect(inputs.length).toBeGreaterThan(25);
    const printed = (s: LoadedSet) => [...s.warnings, ...(s.errors.length ? new ManifestSetError(s.errors).errors : [])].map(formatError);
    let compared = 0;
    for (const f of inputs) {
      const opts = { recursive: true, clusterImages: null, hashFiles: true, hashing: imageHashing, cwd: fixtures };
      const local = printed(await loadManifests([f], opts));
      const remote = printed(await loadManifests([f], { ...opts, schemaCheck: nodeCheck(d.client) }));
      expect(remote, f).toEqual(local);
      if (local.length > 0) compared++;
    }
    expect(compared).toBeGreaterThan(25);
    // Documents JSON cannot carry (.inf, .nan) are checked in the CLI's process instead.
    const odd = await loadManifests(['number-not-finite.yaml'], { recursive: true, clusterImages: null, hashFiles: true, hashing: imageHashing, cwd: fixtures, schemaCheck: nodeCheck(d.client) });
    expect(printed(odd)).toEqual(['number-not-finite.yaml:11:14 VirtualMachine/web spec.memoryMiB: expected a positive integer (MiB), got .inf', 'number-not-finite.yaml:12:10 VirtualMachine/web spec.vcpus: expected a positive integer, got .nan']);
    await expect(d.client.json('POST', '/v1/validate', { documents: [{ kind: 'Flavour', value: {} }] })).rejects.toMatchObject({ code: 'invalid', message: expect.stringContaining('documents[0].kind') });
  });

  it('refuses JSON requests over 8 MiB with a clear error (exit 2)', async () => {
    const huge = { desired: [{ kind: 'VirtualMachine' as const, name: 'big', labels: {}, spec: { image: 'app', kernelArgs: 'x'.repeat(9 * 1024 * 1024) } }], applyset: 'x', prune: false, maxPrune: 0, dryRun: false };
    const err = (await d.client.apply(huge).catch((e: unknown) => e)) as ApiError;
    expect(err.code).toBe('too-large');
    expect(err.exitCode).toBe(2);
    expect((await d.client.status()).nodeId).toBe(d.nodeId);
  });

  it('answers /healthz and /readyz without a token, and nothing under /v1 without one', async () => {
    expect((await fetch(`${d.api}/healthz`)).status).toBe(200);
    const ready = await fetch(`${d.api}/readyz`);
    expect([ready.status, await ready.json()]).toEqual([200, { ready: true }]);
    const denied = await fetch(`${d.api}/v1/status`);
    expect(denied.status).toBe(401);
    expect(((await denied.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
  });

  it('finds the local node by the record `node start` wrote, with no flags at all', async () => {
    const r = cli(['status', '-o', 'json'], { configHome: path.join(work, 'config'), cwd: work });
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ nodeId: d.nodeId, raft: { role: 'leader', leader: d.nodeId } });
    expect(s.raft.term).toBeGreaterThanOrEqual(1);
    expect(s.raft.members).toEqual([{ nodeId: d.nodeId, name: expect.any(String), role: 'voter', api: d.api }]);
    expect(s.nodes[0]).toMatchObject({ nodeId: d.nodeId, role: 'voter', ready: true, formats: expect.arrayContaining(['executable']) });
    // --data-dir alone also works: the token from D/token, the API from the record.
    expect(cli(['status', '-o', 'json', '--data-dir', d.dataDir], { configHome: path.join(work, 'config'), cwd: work }).code).toBe(0);
  });

  it('prints a one-line join ticket, the versions, and the JSON Schema', async () => {
    const t = run(['node', 'ticket', '--role', 'voter', '--ttl', '1h']);
    expect(t.code).toBe(0);
    expect(t.stdout.trim().split('\n')).toHaveLength(1);
    expect(t.stdout).toMatch(/^bxjoin1[A-Za-z0-9_-]+\n$/);
    const v = JSON.parse(run(['version', '-o', 'json']).stdout);
    const pkg = JSON.parse(await readFile(path.join(import.meta.dirname, '..', 'package.json'), 'utf8'));
    expect(v).toMatchObject({ client: { version: pkg.version }, server: { version: pkg.version, nodeId: d.nodeId } });
    const schema = JSON.parse(run(['schema']).stdout);
    expect(schema.oneOf.map((s: { title: string }) => s.title)).toEqual(['VirtualMachine', 'Image', 'Peer']);
    expect(schema.oneOf[0].properties.spec.properties.vcpus).toMatchObject({ type: 'integer' });
    expect(schema.oneOf[0].additionalProperties).toBe(false);
  });
});
