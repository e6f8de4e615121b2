import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { blake3 } from 'hash-wasm';
import { imageHashing } from '../src/cli/manifests.js';
import { ManifestSetError, MAX_MANIFEST_BYTES, formatError, loadManifests, sortErrors, type LoadedSet } from '../src/manifest/index.js';

// The corpus of bad manifests (test/fixtures/bad). Each fixture is NAME.expected plus its input:
// NAME.yaml (or .yml / .json), or, when there is no such file, the folder NAME/ (read with -R).
// A folder NAME/ beside a NAME.yaml only holds files that manifest names (image files).
// NAME.expected holds the exact lines `blixard validate -f NAME.yaml -R` prints on stderr when run
// from the fixtures folder: warnings first (as the loader returns them), then errors in the order
// the CLI prints them (ManifestSetError: by file, then line and column). `<FIXTURES>` stands for
// the absolute path of the fixtures folder (messages about image files show resolved paths).

const ROOT = path.resolve(import.meta.dirname, '..');
const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'bad');
const BIN = path.join(ROOT, 'bin', 'blixard.js');

/** Fixtures whose problem is with a whole file or folder: no line and column applies. */
const FILE_LEVEL = new Set(['no-manifests']);

interface Fixture {
  name: string;
  input: string; // relative to FIXTURES, as passed to -f
  expected: string[];
}

function discover(): Fixture[] {
  const entries = readdirSync(FIXTURES);
  const fixtures: Fixture[] = [];
  for (const e of entries.filter((n) => n.endsWith('.expected')).sort()) {
    const name = e.slice(0, -'.expected'.length);
    const input = [`${name}.yaml`, `${name}.yml`, `${name}.json`, name].find((c) => existsSync(path.join(FIXTURES, c)));
    if (!input) throw new Error(`fixture ${e} has no input (${name}.yaml, .yml, .json or folder ${name}/)`);
    const text = readFileSync(path.join(FIXTURES, e), 'utf8').replaceAll('<FIXTURES>', FIXTURES);
    fixtures.push({ name, input, expected: text.split('\n').filter((l) => l !== '') });
  }
  return fixtures;
}

const fixtures = discover();

/** What `validate` prints on stderr for a set, before its summary line. */
function printed(set: LoadedSet): string[] {
  const errors = set.errors.length > 0 ? new ManifestSetError(set.errors).errors : [];
  return [...set.warnings.map(formatError), ...errors.map(formatError)];
}

function load(paths: string[], cwd = FIXTURES): Promise<LoadedSet> {
  return loadManifests(paths, { recursive: true, clusterImages: null, hashFiles: true, hashing: imageHashing, cwd });
}

function cli(args: string[], cwd: string) {
  if (!existsSync(path.join(ROOT, 'dist', 'src', 'cli', 'main.js'))) {
    throw new Error('dist/ is missing: run `npx tsc -p tsconfig.json` before this test');
  }
  return spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' }, timeout: 30_000 });
}

describe('bad manifest corpus', () => {
  it('has at least 30 fixtures, and every input has an .expected', () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(30);
    const known = new Set(fixtures.flatMap((f) => [f.input, f.name]));
    for (const e of readdirSync(FIXTURES)) {
      if (e.endsWith('.expected')) continue;
      const full = path.join(FIXTURES, e);
      // A data folder belongs to the manifest of the same name.
      if (statSync(full).isDirectory() && existsSync(`${full}.yaml`)) continue;
      expect(known.has(e), `${e} has no .expected file`).toBe(true);
    }
  });

  it.each(fixtures.map((f) => [f.name, f] as const))('%s', async (_name, f) => {
    expect(f.expected.length, 'an .expected file lists at least one line').toBeGreaterThan(0);
    const set = await load([f.input]);
    expect(printed(set)).toEqual(f.expected);
  });

  it.each(fixtures.map((f) => [f.name, f] as const))('%s: every expected line names file:line:col', (_name, f) => {
    for (const line of f.expected) {
      if (FILE_LEVEL.has(f.name)) {
        expect(line.startsWith(`${f.input} `), line).toBe(true);
        expect(line, 'a file-level error has no line:col').not.toMatch(/^\S+:\d+:\d+ /);
        continue;
      }
      const m = /^(\S+?):(\d+):(\d+) /.exec(line);
      expect(m, `no file:line:col in: ${line}`).not.toBeNull();
      const [, file, l, c] = m!;
      expect(file === f.input || file!.startsWith(`${f.input}/`), `file ${file} is not the fixture ${f.input}`).toBe(true);
      expect(Number(l)).toBeGreaterThanOrEqual(1);
      expect(Number(c)).toBeGreaterThanOrEqual(1);
    }
  });

  it('every fixture but the warning-only one is invalid, and that one is valid with a warning', async () => {
    for (const f of fixtures) {
      const set = await load([f.input]);
      if (f.name === 'vm-image-not-in-set') {
        expect(set.errors).toEqual([]);
        expect(set.warnings.map(formatError)).toEqual(f.expected);
      } else {
        expect(set.errors.length, `${f.name} must have errors`).toBeGreaterThan(0);
      }
    }
  });

  it('all fixtures loaded together report every error of every file at once', async () => {
    // One set of all inputs: no problem may hide another. Compared with what each fixture gives
    // alone (so this test is about completeness, not wording). Set-level checks legitimately differ
    // in a bigger set (duplicates across fixtures, Images found elsewhere), so those are skipped.
    const setLevel = (name: string) => name.startsWith('duplicate-name') || name === 'peer-duplicate-nodeid';
    const together = new Set((await load(fixtures.map((f) => f.input))).errors.map(formatError));
    const missing: string[] = [];
    for (const f of fixtures) {
      if (setLevel(f.name)) continue;
      for (const l of (await load([f.input])).errors.map(formatError)) if (!together.has(l)) missing.push(l);
    }
    expect(missing).toEqual([]);
  });

  it('loadManifests returns errors already ordered by file, line and column', async () => {
    // The CLI sorts (ManifestSetError); callers of loadManifests (watch, the API) should not have to.
    const unsorted: string[] = [];
    for (const f of fixtures) {
      const set = await load([f.input]);
      const got = set.errors.map(formatError);
      if (JSON.stringify(got) !== JSON.stringify(sortErrors(set.errors).map(formatError))) unsorted.push(f.name);
    }
    expect(unsorted).toEqual([]);
  });

  it('a path that does not exist is a file-level error', async () => {
    const set = await load(['does-not-exist.yaml']);
    expect(printed(set)).toEqual(['does-not-exist.yaml no such file or directory']);
  });
});

describe('manifest size limit (files generated, not committed)', () => {
  async function withFile<T>(name: string, size: number, fn: (dir: string) => Promise<T>): Promise<T> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'blixard-size-'));
    try {
      // A YAML comment of the given size: valid YAML, so only the size can be wrong.
      await writeFile(path.join(dir, name), '#'.repeat(size - 1) + '\n');
      return await fn(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  it('refuses a file well over 4 MiB', async () => {
    await withFile('huge.yaml', MAX_MANIFEST_BYTES + 1.5 * 1024 * 1024, async (dir) => {
      const set = await load(['huge.yaml'], dir);
      expect(printed(set)).toEqual(['huge.yaml is 5767168 bytes, over the limit of 4194304 bytes (4 MiB) per manifest file']);
    });
  });

  it('refuses a file one byte over 4 MiB, saying by how much', async () => {
    await withFile('huge.yaml', MAX_MANIFEST_BYTES + 1, async (dir) => {
      const set = await load(['huge.yaml'], dir);
      // Not "is 4.0 MiB, over the limit of 4 MiB": the size must visibly exceed the limit.
      expect(printed(set)).toEqual(['huge.yaml is 4194305 bytes, over the limit of 4194304 bytes (4 MiB) per manifest file']);
    });
  });

  it('accepts a file of exactly 4 MiB', async () => {
    await withFile('big.yaml', MAX_MANIFEST_BYTES, async (dir) => {
      const set = await load(['big.yaml'], dir);
      expect(printed(set)).toEqual([]);
    });
  });
});

describe('blixard validate (compiled CLI)', () => {
  const byName = new Map(fixtures.map((f) => [f.name, f]));

  it.each([
    ['three-broken-documents', ['-f', 'three-broken-documents.yaml']],
    ['errors-across-files', ['-f', 'errors-across-files', '-R']],
  ] as const)('%s: exit 2 and the expected lines on stderr', (name, args) => {
    const f = byName.get(name)!;
    const r = cli(['validate', ...args], FIXTURES);
    expect(r.status, r.stderr).toBe(2);
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    for (const l of f.expected) expect(lines).toContain(l);
    // In the same order, followed by the summary.
    expect(lines.slice(0, f.expected.length)).toEqual(f.expected);
    expect(lines[f.expected.length]).toBe(`error: ${f.expected.length} problems in the manifests; nothing was applied`);
    expect(r.stdout).toBe('');
  });

  it('a VM whose Image is not in the set is only a warning: exit 0', () => {
    const f = byName.get('vm-image-not-in-set')!;
    const r = cli(['validate', '-f', f.input], FIXTURES);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr.split('\n').filter((l) => l !== '')).toEqual(f.expected);
    expect(r.stdout).toBe('1 resource valid\n');
  });

  it('a valid set exits 0', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'blixard-valid-'));
    try {
      const kernel = Buffer.from('a tiny kernel stand-in\n');
      await mkdir(path.join(dir, 'images'));
      await mkdir(path.join(dir, 'manifests', 'vms'), { recursive: true });
      await writeFile(path.join(dir, 'images', 'vmlinuz'), kernel);
      await writeFile(path.join(dir, 'images', 'hello.sh'), '#!/bin/sh\necho BLIXARD-GUEST-READY\n');
      await writeFile(
        path.join(dir, 'manifests', 'images.yaml'),
        [
          'apiVersion: blixard.dev/v1',
          'kind: Image',
          'metadata: { name: tiny-linux, labels: { team: platform } }',
          'spec:',
          '  path: ../images/vmlinuz',
          '  initrd: ../images/vmlinuz',
          '  format: kernel',
          `  hash: blake3:${await blake3(kernel)}`,
          '  readyPattern: "^BLIXARD-GUEST-READY$"',
          '---',
          'apiVersion: blixard.dev/v1',
          'kind: Image',
          'metadata: { name: hello }',
          'spec: { path: ../images/hello.sh, format: executable }',
          '---',
          'apiVersion: blixard.dev/v1',
          'kind: Image',
          'metadata: { name: remote }',
          'spec: { blob: "blake3:0000000000000000000000000000000000000000000000000000000000000000", format: qcow2 }',
          '---',
          'apiVersion: blixard.dev/v1',
          'kind: Peer',
          'metadata: { name: node-b, labels: { zone: b } }',
          'spec:',
          '  nodeId: ae58ff8833241ac82d6ff7611046ed67b5072d142c588d0063e942d9a75502b6',
          '  addresses: ["127.0.0.1:4501", "[::1]:4502", "node-b.example:4503"]',
          '  role: voter',
          '  capacity: { vcpus: 8, memoryMiB: 16384 }',
          '',
        ].join('\n'),
      );
      await writeFile(
        path.join(dir, 'manifests', 'vms', 'web.yaml'),
        [
          '# An anchor and an alias in one document (well under the alias limit) are fine.',
          'apiVersion: blixard.dev/v1',
          'kind: VirtualMachine',
          'metadata:',
          '  name: web-1',
          '  labels: &web { app: web, example.com/tier: "3" }',
          'spec:',
          '  image: tiny-linux',
          '  vcpus: 2',
          '  memoryMiB: 512',
          '  state: Stopped',
          '  kernelArgs: console=ttyS0',
          '  restartPolicy: OnFailure',
          '  ports: [{ host: 8080, guest: 80 }, { host: 8080, guest: 80, protocol: udp }]',
          '  placement: { nodeSelector: *web, spreadBy: app }',
          '---',
          'apiVersion: blixard.dev/v1',
          'kind: VirtualMachine',
          'metadata: { name: web-2, labels: { app: web } }',
          'spec: { image: hello }',
          '---',
          'apiVersion: blixard.dev/v1',
          'kind: VirtualMachine',
          'metadata: { name: tiny-linux }   # same name as an Image: names are unique per kind only',
          'spec: { image: remote }',
          '',
        ].join('\n'),
      );
      const set = await load(['manifests'], dir);
      expect(printed(set)).toEqual([]);
      expect(set.manifests.length).toBe(7);

      const r = cli(['validate', '-f', 'manifests', '-R'], dir);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('7 resources valid\n');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
