import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

// A daemon told to stop exits once its node has stopped, even when something still holds the
// event loop (an Iroh shutdown that did not finish keeps native threads, and the process, alive:
// one stayed up 20 s past its SIGTERM, until the 30 s stop deadline).

const compiled = path.resolve(import.meta.dirname, '../../dist/src/cli/node-start.js');

describe('stopOnSignal', () => {
  it('exits within about a second of the node stopping, whatever keeps the process alive', async () => {
    expect(existsSync(compiled), 'dist/ is missing: npm test builds it first').toBe(true);
    const script = `
      const { stopOnSignal } = await import(${JSON.stringify(pathToFileURL(compiled).href)});
      setInterval(() => {}, 1000); // as Iroh's threads would
      const stopped = stopOnSignal({ stop: async () => {} }, { info() {}, error() {} });
      process.stdout.write('ready\\n');
      await stopped;
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
    const t0 = Date.now();
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    expect(code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5_000);
  });
});
