import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BIN, ROOT, requireBuild } from './helpers/daemon.js';

// A CLI command pays at start for every module it loads (node -e 0 is ~100 ms of a ~300 ms
// `apply`). What would cost most is loaded only on use: zod (~60 ms) by the schema checks,
// fast-json-patch and node:crypto by the store and the API server. This checks, on the build,
// that importing the folders the CLI imports does not load them, and that `--help` loads none
// of those folders at all.

const HOOK = path.join(ROOT, 'test', 'helpers', 'log-modules.mjs');
const DIST = path.join(ROOT, 'dist', 'src');

/** The modules a node process loads: file URLs made relative to the checkout, and builtins. */
function modulesLoaded(args: string[]): string[] {
  const log = path.join(os.tmpdir(), `blixard-modules-${process.pid}-${Math.random().toString(36).slice(2)}.txt`);
  try {
    const r = spawnSync(process.execPath, ['--import', HOOK, ...args], { cwd: ROOT, env: { ...process.env, LOG_MODULES: log }, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
    const root = `file://${ROOT}/`;
    return [...new Set(readFileSync(log, 'utf8').split('\n').filter(Boolean))].map((u) => (u.startsWith(root) ? u.slice(root.length) : u));
  } finally {
    rmSync(log, { force: true });
  }
}

const importing = (...files: string[]) => modulesLoaded(['--input-type=module', '-e', files.map((f) => `await import(${JSON.stringify(path.join(DIST, f))});`).join('')]);
const heavy = (mods: string[]) => mods.filter((m) => /node_modules\/(zod|fast-json-patch)\/|^node:crypto$/.test(m));

describe('CLI start-up', () => {
  beforeAll(requireBuild);

  it('sees what is loaded (the schema command does load zod)', () => {
    expect(heavy(modulesLoaded([BIN, 'schema'])).some((m) => m.includes('node_modules/zod/'))).toBe(true);
  });

  it('imports the manifest, state, api and host folders without zod, fast-json-patch or node:crypto', () => {
    expect(heavy(importing('manifest/index.js', 'state/index.js', 'api/index.js', 'host/index.js', 'storage/index.js'))).toEqual([]);
  });

  it('runs --help with none of our folders but cli/ loaded', () => {
    const ours = modulesLoaded([BIN, '--help']).filter((m) => m.startsWith('dist/'));
    expect(ours.sort()).toEqual(['dist/src/cli/exit.js', 'dist/src/cli/main.js']);
  });
});
