import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { pino } from 'pino';
import { ApiClient, type VmStatus } from '../api/index.js';
import { StartupError, readSettings, startNode, type RunningNode } from '../node/index.js';
import { loadAgainst, uploadFiles } from './manifests.js';
import { terminal } from './output.js';
import { statusLine } from './progress.js';
import { runUntilSignal } from './node-start.js';
import { vmSettled } from './wait.js';

// `blixard up`: an embedded single-node cluster on this machine. It bootstraps (once), applies a
// folder of manifests (examples/ by default), reports what it did, and keeps serving until ^C.

export function defaultUpDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_DATA_HOME && path.isAbsolute(env.XDG_DATA_HOME) ? env.XDG_DATA_HOME : path.join(os.homedir(), '.local', 'share');
  return path.join(base, 'blixard', 'up');
}

export default async function up(opts: { filename: string; api?: string }, cmd: Command): Promise<void> {
  const out = terminal();
  const g = cmd.optsWithGlobals() as { dataDir?: string };
  const dataDir = path.resolve(g.dataDir ?? process.env.BLIXARD_DATA_DIR ?? defaultUpDir());
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  // The daemon's own log goes to a file: the terminal is for progress and results.
  const logFile = path.join(dataDir, 'node.log');
  const log = pino({ level: process.env.BLIXARD_LOG_LEVEL ?? 'info' }, pino.destination({ dest: logFile, mkdir: true, sync: false }));
  const line = statusLine();

  line.set(`starting node in ${dataDir} ...`);
  // A development cluster on one machine runs small VMs: offer 4 vcpus per core (overcommit).
  const flags = (await readSettings(dataDir)) ? {} : { vcpus: Math.max(8, os.cpus().length * 4) };
  let node: RunningNode;
  try {
    node = await startNode({ dataDir, flags: { ...flags, api: opts.api ?? '127.0.0.1:7400' }, bootstrap: true, log });
  } catch (e) {
    if (!(e instanceof StartupError) || opts.api || !/in use/.test(e.message)) throw e;
    // The default port is taken (another node?): an embedded cluster can live anywhere.
    node = await startNode({ dataDir, flags: { ...flags, api: '127.0.0.1:0' }, bootstrap: true, log });
  }
  try {
    line.done(`node ${node.name} ready: api ${node.apiUrl}, nodeId ${node.nodeId} (log: ${logFile})`);

    const client = new ApiClient({ server: node.apiUrl, token: node.token });
    try {
      line.set(`applying ${opts.filename} ...`);
      const set = await loadAgainst(client, [opts.filename], true, out);
      await uploadFiles(client, set.files);
      const res = await client.apply({ desired: set.desired, applyset: 'up', prune: false, maxPrune: 0, dryRun: false });
      line.done(`applied ${opts.filename}: ${res.results.length} resources`);
      for (const r of res.results) out.write(`${r.kind}/${r.name} ${r.action}\n`);
      // Show progress until every VM of the set has settled: running, stopped, or stuck with a reason.
      const names = set.desired.filter((d) => d.kind === 'VirtualMachine').map((d) => d.name);
      const deadline = Date.now() + 180_000;
      for (;;) {
        const vms = (await client.list('VirtualMachine')).filter((v) => names.includes(v.metadata.name));
        const states = vms.map((v) => ({ v, s: vmSettled(v) }));
        const settled = states.filter((x) => x.s !== 'waiting');
        line.set(`reconciling: ${states.filter((x) => x.s === 'done').length}/${names.length} VMs in their desired state`);
        if (settled.length === names.length || Date.now() > deadline) {
          line.done();
          for (const { v, s } of states) {
            const st = v.status as VmStatus;
            out.err(`  VirtualMachine/${v.metadata.name}: ${st.phase}${s === 'done' ? '' : ` (${st.message})`}\n`);
          }
          break;
        }
        await new Promise((r) => setTimeout(r, 300));
      }
      const status = await client.status();
      out.err(`${status.vms.total} VMs, ${status.vms.running} running.\n`);
      for (const n of status.notes) out.err(`note: ${n}\n`);
    } finally {
      client.close();
    }
    out.err(`serving on ${node.apiUrl}; try \`blixard get vms\` or \`blixard status\` in another terminal. Ctrl-C stops.\n`);
  } catch (e) {
    await node.stop();
    throw e;
  }
  await runUntilSignal(node, log);
}
