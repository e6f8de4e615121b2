import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startIroh } from '../src/p2p/iroh.js';
import { BIN, removeDir, tempDir } from '../test/helpers/daemon.js';
import { pct, type Row } from './table.js';

// Where a node's start goes (issue 17): `blixard node start` from process start to its `ready`
// line, beside Iroh's own start in a process that does nothing else (the same persistent node,
// options and offline network probe), in the same run. The difference is what Blixard adds:
// loading its modules, its data dir, the Raft log, documents, the API. iroh 0.35 has no product
// setting that skips the probe (IROH_FORCE_STAGING_RELAYS is test-only), so Iroh's time stays.

const here = fileURLToPath(import.meta.url);

/** ms from spawning `cmd` to the first stdout line matching `ready`. */
function timeToLine(args: string[], ready: RegExp, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const t0 = performance.now();
  const proc = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (c: Buffer) => (err += String(c)));
  return new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (c: Buffer) => {
      out += String(c);
      if (ready.test(out)) {
        const ms = performance.now() - t0;
        proc.kill('SIGTERM');
        proc.once('exit', () => resolve(ms));
      }
    });
    proc.once('exit', (code) => (ready.test(out) ? undefined : reject(new Error(`${args.join(' ')} exited with ${code}: ${err.slice(-500)}`))));
  });
}

export async function startupBench(rounds = 5): Promise<Row[]> {
  const node: number[] = [];
  const irohProcess: number[] = [];
  const irohCall: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const dir = await tempDir('blixard-startup-');
    try {
      node.push(await timeToLine([BIN, 'node', 'start', '--bootstrap', '--name', 's', '--data-dir', path.join(dir, 'node'), '--api', '127.0.0.1:0', '--hypervisor', 'process'], /^ready /m, { ...process.env, XDG_CONFIG_HOME: path.join(dir, 'config') }));
      let call = 0;
      irohProcess.push(
        await new Promise<number>((resolve, reject) => {
          const t0 = performance.now();
          const proc = spawn(process.execPath, [here, 'iroh', path.join(dir, 'iroh')], { stdio: ['ignore', 'pipe', 'inherit'] });
          proc.stdout.once('data', (c: Buffer) => {
            call = Number(String(c).trim());
            resolve(performance.now() - t0);
          });
          proc.once('exit', (code) => (code ? reject(new Error(`the Iroh start child exited with ${code}`)) : undefined));
        }),
      );
      irohCall.push(call);
    } finally {
      await removeDir(dir);
    }
  }
  const n50 = pct(node, 50);
  const i50 = pct(irohProcess, 50);
  return [
    { name: `node start: process start to ready, fresh data dir (p50 of ${rounds})`, value: n50, unit: 'ms', target: `Iroh's own time + what Blixard adds (${Math.round(n50 - i50)} ms)` },
    { name: 'node start: max', value: Math.max(...node), unit: 'ms', target: '' },
    { name: "Iroh's own start: a process that only starts the same Iroh node (p50)", value: i50, unit: 'ms', target: 'floor' },
    { name: "Iroh's own start: of which Iroh.persistent (p50)", value: pct(irohCall, 50), unit: 'ms', target: 'floor' },
  ];
}

// The child: starts Iroh as the daemon does (no protocols), prints how long Iroh.persistent took.
if (process.argv[2] === 'iroh' && import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const t0 = performance.now();
  const iroh = await startIroh({ dir: process.argv[3]!, secretKey: randomBytes(32), listen: '127.0.0.1:0', discovery: 'none' });
  process.stdout.write(`${Math.round(performance.now() - t0)}\n`);
  await iroh.node.shutdown();
  process.exit(0);
}
