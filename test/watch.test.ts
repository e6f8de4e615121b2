import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VmSpec } from '../src/state/index.js';
import { BIN, removeDir, removeVms, startDaemon, tempDir, testEnv, type Daemon } from './helpers/daemon.js';
import { until } from './helpers/until.js';

// Watch mode: a git checkout is applied on every change; a bad edit is reported and changes
// nothing; --git pulls new commits and records which commit was applied.

let work: string;
let d: Daemon;
let watcher: ChildProcess;
let output = '';
const git = (cwd: string, ...args: string[]) => execFileSync('git', ['-c', 'user.email=t@example.com', '-c', 'user.name=t', ...args], { cwd, encoding: 'utf8' }).trim();

const manifest = (mem: number, extra = '') => `apiVersion: blixard.dev/v1
kind: Image
metadata: { name: app }
spec: { path: ./app.sh, format: executable }
---
apiVersion: blixard.dev/v1
kind: VirtualMachine
metadata: { name: watched }
spec: { image: app, memoryMiB: ${mem}${extra} }
`;

/** until(), and on a timeout what `blixard watch` printed. */
async function untilWatched<T>(what: string, fn: () => Promise<T | undefined | false>): Promise<T> {
  try {
    return await until(what, fn, 20_000, 50);
  } catch (err) {
    throw new Error(`${(err as Error).message}; watch said:\n${output}`);
  }
}
const memory = async () => ((await d.client.get('VirtualMachine', 'watched')).spec as VmSpec).memoryMiB;

beforeAll(async () => {
  work = await tempDir();
  d = await startDaemon({ dataDir: path.join(work, 'node'), configHome: path.join(work, 'config'), args: ['--bootstrap', '--hypervisor', 'process'] });
  // upstream (bare) <- author clone pushes; the watched checkout pulls.
  const upstream = path.join(work, 'upstream.git');
  git(work, 'init', '-q', '--bare', '-b', 'main', upstream);
  const author = path.join(work, 'author');
  git(work, 'clone', '-q', upstream, author);
  await writeFile(path.join(author, 'app.sh'), '#!/bin/sh\nexec sleep 100000\n', { mode: 0o755 });
  await writeFile(path.join(author, 'vm.yaml'), manifest(64));
  git(author, 'add', '.');
  git(author, 'commit', '-q', '-m', 'first');
  git(author, 'push', '-q', 'origin', 'main');
  git(work, 'clone', '-q', upstream, path.join(work, 'checkout'));
  watcher = spawn(process.execPath, [BIN, 'watch', '-f', path.join(work, 'checkout'), '--git', '--interval', '1s', '--debounce', '200ms', '--server', d.api, '--token', d.token], {
    env: testEnv(path.join(work, 'config')),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  watcher.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  watcher.stderr!.on('data', (c: Buffer) => (output += c.toString()));
});

afterAll(async () => {
  watcher?.kill('SIGTERM');
  await d?.stop();
  await removeVms(path.join(work, 'node'));
  await removeDir(work);
});

describe('blixard watch', () => {
  it('applies the checkout at start and records its commit', async () => {
    await untilWatched('the first apply', async () => (await memory()) === 64);
    const sha = git(path.join(work, 'checkout'), 'rev-parse', '--short=12', 'HEAD');
    const s = await d.client.status();
    expect(s.applysets.find((a) => a.name === 'watch')?.revision).toBe(sha);
  });

  it('applies an edit within moments, and records that the tree was dirty', async () => {
    const t0 = Date.now();
    await writeFile(path.join(work, 'checkout', 'vm.yaml'), manifest(96));
    await untilWatched('the edit to be applied', async () => (await memory()) === 96);
    console.log(`watch: edit to applied in ${Date.now() - t0} ms (target < 2 s)`);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect((await d.client.status()).applysets.find((a) => a.name === 'watch')?.revision).toMatch(/-dirty$/);
  });

  it('reports a bad edit and changes nothing', async () => {
    output = '';
    await writeFile(path.join(work, 'checkout', 'vm.yaml'), manifest(128, ', vcpus: lots'));
    await untilWatched('the refusal', async () => output.includes('not applied'));
    expect(output).toMatch(/vm\.yaml:9:\d+ VirtualMachine\/watched spec\.vcpus: expected a positive integer, got "lots"/);
    expect(await memory()).toBe(96);
  });

  it('pulls new commits with --git and applies them, recording the commit', async () => {
    // Put the checkout back in step, then push a change upstream.
    git(path.join(work, 'checkout'), 'checkout', '-q', '--', 'vm.yaml');
    const author = path.join(work, 'author');
    await writeFile(path.join(author, 'vm.yaml'), manifest(160));
    git(author, 'commit', '-q', '-am', 'more memory');
    git(author, 'push', '-q', 'origin', 'main');
    const sha = git(author, 'rev-parse', '--short=12', 'HEAD');
    await untilWatched('the pulled commit to be applied', async () => (await memory()) === 160);
    await untilWatched('the revision to be recorded', async () => (await d.client.status()).applysets.find((a) => a.name === 'watch')?.revision === sha);
  });

  it('prunes what left the folder with --prune, and refuses (changing nothing) past --max-prune', async () => {
    const dir = path.join(work, 'pruned');
    const { mkdir, rm } = await import('node:fs/promises');
    await mkdir(dir, { recursive: true });
    const vm = (name: string) => `apiVersion: blixard.dev/v1\nkind: VirtualMachine\nmetadata: { name: ${name} }\nspec: { image: app, memoryMiB: 8 }\n`;
    for (const n of ['p-a', 'p-b', 'p-c', 'p-keep']) await writeFile(path.join(dir, `${n}.yaml`), vm(n));
    let said = '';
    const w = spawn(process.execPath, [BIN, 'watch', '-f', dir, '--prune', '--max-prune', '1', '--applyset', 'pruned', '--debounce', '500ms', '--server', d.api, '--token', d.token], { env: testEnv(path.join(work, 'config')), stdio: ['ignore', 'pipe', 'pipe'] });
    w.stdout!.on('data', (c: Buffer) => (said += c.toString()));
    w.stderr!.on('data', (c: Buffer) => (said += c.toString()));
    const names = async () => (await d.client.list('VirtualMachine')).map((v) => v.metadata.name).filter((n) => n.startsWith('p-')).sort();
    try {
      await untilWatched('the four VMs', async () => (await names()).length === 4);
      // One file gone: one VM pruned.
      await rm(path.join(dir, 'p-c.yaml'));
      await untilWatched('p-c pruned', async () => JSON.stringify(await names()) === JSON.stringify(['p-a', 'p-b', 'p-keep']));
      await untilWatched('the watcher to say so', async () => /VirtualMachine\/p-c pruned/.test(said));
      // Two gone at once: more than --max-prune 1, so nothing is deleted, and it says why.
      said = '';
      await rm(path.join(dir, 'p-a.yaml'));
      await rm(path.join(dir, 'p-b.yaml'));
      await untilWatched('the refusal', async () => said.includes('not applied'));
      expect(said).toMatch(/would delete 2 resources, more than --max-prune 1/);
      expect(await names()).toEqual(['p-a', 'p-b', 'p-keep']);
      // A folder left with no manifests at all is refused too (never read as "delete everything").
      said = '';
      await rm(path.join(dir, 'p-keep.yaml'));
      await untilWatched('the refusal of an empty folder', async () => said.includes('holds no manifest files'));
      expect(await names()).toEqual(['p-a', 'p-b', 'p-keep']);
    } catch (e) {
      console.log(said);
      throw e;
    } finally {
      w.kill('SIGTERM');
    }
  });
});
