import type { Command } from 'commander';
import { pino } from 'pino';
import { startNode, type RunningNode, type SettingFlags } from '../node/index.js';
import { UsageError } from './output.js';

// `blixard node start`: the daemon in the foreground. Logs (pino, JSON) go to stderr; the one
// line scripts wait for, `ready nodeId=<id> api=<url>`, goes to stdout once the node serves.

interface StartFlags {
  name?: string;
  api?: string;
  listen?: string;
  bootstrap?: boolean;
  join?: string;
  role?: 'voter' | 'worker';
  hypervisor?: string;
  labels?: string;
  vcpus?: string;
  memoryMib?: string;
  prefetch?: 'assigned' | 'all';
  maxTransferRate?: string;
  imageCacheSize?: string;
  nodeTimeout?: string;
  fenceAfter?: string;
  discovery?: 'none' | 'iroh';
  p2p?: 'on' | 'off';
}

export default async function nodeStart(flags: StartFlags, cmd: Command): Promise<void> {
  const g = cmd.optsWithGlobals() as { dataDir?: string };
  const dataDir = g.dataDir ?? process.env.BLIXARD_DATA_DIR;
  if (!dataDir) throw new UsageError('--data-dir: required for node start');
  const log = pino({ base: { pid: process.pid }, level: process.env.BLIXARD_LOG_LEVEL ?? 'info' }, pino.destination(2));
  const node = await startNode({
    dataDir,
    flags: settingFlags(flags),
    bootstrap: !!flags.bootstrap,
    ...(flags.join ? { join: flags.join } : {}),
    log,
    onFatal: () => process.kill(process.pid, 'SIGTERM'),
  });
  const stopped = stopOnSignal(node, log);
  // startNode returns once the node serves: API calls that came earlier waited for that moment
  // (they were not answered 503), and are answered from now on.
  process.stdout.write(`ready nodeId=${node.nodeId} api=${node.apiUrl}\n`);
  log.info({ nodeId: node.nodeId, api: node.apiUrl }, 'ready');
  await stopped;
}

/** After SIGTERM, the longest a stop may take before the process exits anyway. */
const STOP_DEADLINE_MS = 30_000;
/**
 * Once the node has stopped, the process exits this soon whatever still holds its event loop:
 * an Iroh shutdown that did not finish keeps native threads alive, and the process with them.
 */
const EXIT_AFTER_STOP_MS = 1_000;

/** Serves until SIGTERM or SIGINT, then stops cleanly (VMs, when there are some, keep running).
 * Installs the SIGTERM/SIGINT handlers at once (call it before announcing that the node serves,
 * so that a signal sent right after the announcement is never met by the default action) and
 * resolves once the node has stopped. */
export function stopOnSignal(node: Pick<RunningNode, 'stop'>, log: { info(o: object, m?: string): void; error(o: object, m?: string): void }): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      process.removeListener('SIGTERM', onTerm);
      process.removeListener('SIGINT', onInt);
      // A second signal while stopping forces the exit, as a second ^C does elsewhere.
      process.on('SIGTERM', force);
      process.on('SIGINT', force);
      log.info({ signal }, 'stopping');
      // A stop that never finishes would leave a process a supervisor has to SIGKILL: past the
      // deadline it exits on its own, saying so (its VMs keep running either way).
      const deadline = setTimeout(() => {
        log.error({ seconds: STOP_DEADLINE_MS / 1000 }, 'stopping took too long; exiting now');
        process.exit(1);
      }, STOP_DEADLINE_MS);
      deadline.unref();
      const exitSoon = () => {
        setTimeout(() => process.exit(process.exitCode ?? 0), EXIT_AFTER_STOP_MS).unref();
        resolve();
      };
      node.stop().then(exitSoon, (err: unknown) => {
        log.error({ err }, 'stop failed');
        exitSoon();
      });
    };
    const force = () => {
      log.error({}, 'stopping forced by a second signal');
      process.exit(1);
    };
    const onTerm = () => stop('SIGTERM');
    const onInt = () => stop('SIGINT');
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
  });
}

export function settingFlags(f: StartFlags): SettingFlags {
  const int = (flag: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`${flag}: expected a positive integer, got ${JSON.stringify(v)}`);
    return n;
  };
  return {
    name: f.name,
    api: f.api,
    listen: f.listen,
    role: f.role,
    hypervisor: f.hypervisor,
    labels: f.labels === undefined ? undefined : parseLabels(f.labels),
    vcpus: int('--vcpus', f.vcpus),
    memoryMiB: int('--memory-mib', f.memoryMib),
    prefetch: f.prefetch,
    maxTransferRate: f.maxTransferRate,
    imageCacheSize: f.imageCacheSize,
    nodeTimeout: f.nodeTimeout,
    fenceAfter: f.fenceAfter,
    discovery: f.discovery,
    p2p: f.p2p,
  };
}

function parseLabels(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of s.split(',').filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new UsageError(`--labels: expected k=v,k2=v2, got ${JSON.stringify(s)}`);
    out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return out;
}
