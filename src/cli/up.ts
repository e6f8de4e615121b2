import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { pino } from 'pino';
import { ApiClient, type VmStatus } from '../api/index.js';
import { StartupError, readSettings, startNode, type RunningNode } from '../node/index.js';
import { loadManifests, formatError, type LoadedSet } from '../manifest/index.js';
import type { DesiredResource, ImageSpec } from '../state/index.js';
import { imageHashing, uploadFiles } from './manifests.js';
import { stopOnSignal } from './node-start.js';
import { terminal, type Out } from './output.js';
import { statusLine } from './progress.js';
import { vmSettled } from './wait.js';

// `blixard up`: an embedded single-node cluster on this machine. It bootstraps (once), applies a
// folder of manifests (examples/ by default), shows progress until the VMs settle, and keeps
// serving until ^C. Each subfolder is an example of its own: one that needs what this machine
// lacks (QEMU, say) is skipped with the reason, and a guest that a build.sh makes is built first.

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
  // Handlers first: ^C while the examples apply stops the node cleanly too.
  let signalled = false;
  const stopped = stopOnSignal(node, log).then(() => {
    signalled = true;
  });
  try {
    line.done(`node ${node.name} ready: api ${node.apiUrl}, nodeId ${node.nodeId} (log: ${logFile})`);
    const client = new ApiClient({ server: node.apiUrl, token: node.token });
    try {
      const set = await loadExamples(path.resolve(opts.filename), node, out);
      if (set.desired.length === 0) {
        out.err('nothing to apply\n');
      } else {
        line.set(`applying ${opts.filename} ...`);
        await uploadFiles(client, set.files);
        const res = await client.apply({ desired: set.desired, applyset: 'up', prune: false, maxPrune: 0, dryRun: false });
        line.done(`applied ${opts.filename}: ${res.results.length} resources`);
        for (const r of res.results) out.write(`${r.kind}/${r.name} ${r.action}\n`);
        await showProgress(client, set.desired.filter((d) => d.kind === 'VirtualMachine').map((d) => d.name), out);
      }
      const status = await client.status();
      out.err(`${status.vms.total} VMs, ${status.vms.running} running.\n`);
      for (const n of status.notes) out.err(`note: ${n}\n`);
    } finally {
      client.close();
    }
    out.err(`serving on ${node.apiUrl}; try \`blixard get vms\` or \`blixard status\` in another terminal. Ctrl-C stops.\n`);
  } catch (e) {
    if (signalled) return; // the node stopped under the apply: that is what the operator asked
    await node.stop();
    throw e;
  }
  await stopped;
}

/** Loads each example (a subfolder, or the folder's own files) on its own, and keeps what can run. */
async function loadExamples(dir: string, node: RunningNode, out: Out): Promise<{ desired: DesiredResource[]; files: LoadedSet['files'] }> {
  const bundles: string[] = [];
  if ((await readdir(dir)).some((f) => /\.(ya?ml|json)$/.test(f))) bundles.push(dir);
  for (const e of await readdir(dir, { withFileTypes: true })) if (e.isDirectory() && !e.name.startsWith('.')) bundles.push(path.join(dir, e.name));
  const desired: DesiredResource[] = [];
  const files: LoadedSet['files'] = [];
  for (const b of bundles) {
    const name = path.relative(process.cwd(), b) || '.';
    const recursive = b !== dir;
    let set = await loadManifests([b], { recursive, clusterImages: null, hashFiles: true, hashing: imageHashing });
    // A folder beside the examples that holds no manifests (a systemd unit, say) is not one.
    if (set.manifests.length === 0 && set.errors.every((e) => /holds no manifest files/.test(e.message))) continue;
    const formats = set.manifests.filter((m) => m.kind === 'Image').map((m) => (m.spec as ImageSpec).format);
    const runnable = formats.every((f) => node.formats.includes(f));
    if (!runnable) {
      const missing = [...new Set(formats.filter((f) => !node.formats.includes(f)))];
      const why = node.skippedDrivers.map((d) => `${d.name}: ${d.why}`).join('; ') || 'no driver on this node runs it';
      out.err(`skipped ${name}: it needs format ${missing.join(', ')} (${why})\n`);
      continue;
    }
    // A guest built from packages: build it when its files are missing (first run, or CI).
    const build = path.join(b, 'build.sh');
    if (set.errors.length > 0 && existsSync(build) && set.errors.some((e) => /no such file/.test(e.message))) {
      const ok = await runBuild(build, name);
      if (!ok) {
        out.err(`skipped ${name}: its build.sh failed (see above)\n`);
        continue;
      }
      set = await loadManifests([b], { recursive, clusterImages: null, hashFiles: true, hashing: imageHashing });
    }
    if (set.errors.length > 0) {
      out.err(`skipped ${name}:\n${set.errors.map((e) => `  ${formatError(e)}`).join('\n')}\n`);
      continue;
    }
    desired.push(...set.desired);
    files.push(...set.files);
  }
  return { desired, files };
}

async function runBuild(script: string, name: string): Promise<boolean> {
  const line = statusLine();
  line.set(`building ${name} (${script}) ...`);
  const t0 = Date.now();
  const child = spawn('sh', [script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (code === 0) {
    line.done(`built ${name} in ${Math.round((Date.now() - t0) / 1000)} s`);
    return true;
  }
  line.done(`building ${name} failed (exit ${code}):\n${output.split('\n').slice(-15).join('\n')}`);
  return false;
}

/** Progress until every VM settled: running, stopped, or stuck with a reason. */
async function showProgress(client: ApiClient, names: string[], out: Out): Promise<void> {
  const line = statusLine();
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
      return;
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}

