import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError } from '../api/index.js';
import { ManifestSetError } from '../manifest/index.js';
import { ExitStatus, UsageError } from './exit.js';
import { exitCodeOf } from './main.js';

// One catch maps what a command threw to an exit code, by class: the API's and the manifests'
// error classes are imported there only when needed, not at start.

describe('exitCodeOf', () => {
  let said = '';
  afterEach(() => vi.restoreAllMocks());
  const run = async (e: unknown) => {
    said = '';
    vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((said += String(s)), true));
    return exitCodeOf(e);
  };

  it('maps a ManifestSetError by class to exit 2 and prints every problem', async () => {
    const e = new ManifestSetError([{ file: 'a.yaml', line: 3, col: 5, ref: 'VirtualMachine/web', path: 'spec.vcpus', message: 'expected a positive integer, got 0', severity: 'error' }]);
    expect(await run(e)).toBe(2);
    expect(said).toBe('a.yaml:3:5 VirtualMachine/web spec.vcpus: expected a positive integer, got 0\nerror: 1 problem in the manifests; nothing was applied\n');
  });

  it('does not take an error for a ManifestSetError because of its name', async () => {
    const impostor = Object.assign(new Error('not a set'), { name: 'ManifestSetError', errors: [] });
    expect(await run(impostor)).toBe(1);
    expect(said).toBe('error: not a set\n');
  });

  it('maps an ApiError to the exit code of its code', async () => {
    expect(await run(new ApiError('conflict', 'the plan is stale'))).toBe(4);
    expect(said).toBe('error: the plan is stale\n');
  });

  it('maps the CLI’s own errors, and anything else to 1', async () => {
    expect(await run(new UsageError('-f: expected a file'))).toBe(2);
    expect(await run(new ExitStatus(1))).toBe(1);
    expect(await run(new Error('disk on fire'))).toBe(1);
    expect(said).toBe('error: disk on fire\n');
  });
});
