import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import { ApiError, type ApiClient } from '../api/index.js';
import { ManifestSetError, formatError, loadManifests } from '../manifest/index.js';
import { parseDuration } from '../state/index.js';
import { connect } from './connection.js';
import { imageHashing, uploadFiles } from './manifests.js';
import { paint, terminal, UsageError, type Out } from './output.js';

// `blixard watch -f DIR`: GitOps in one process (Flux's job, by hand). Every change under DIR is
// re-applied after a quiet spell (--debounce); a bad edit is reported and changes nothing, and the
// cluster keeps what it had. With --git the checkout is pulled on an interval and the commit each
// apply came from is recorded (status shows it, or that the tree was dirty).

const exec = promisify(execFile);

interface WatchOptions {
  filename: string;
  prune?: boolean;
  maxPrune: string;
  applyset: string;
  debounce: string;
  git?: boolean;
  interval: string;
}

export default async function watch(opts: WatchOptions, cmd: Command): Promise<void> {
  const out = terminal();
  const dir = path.resolve(opts.filename);
  let debounceMs: number;
  let intervalMs: number;
  try {
    debounceMs = parseDuration(opts.debounce);
    intervalMs = parseDuration(opts.interval);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const maxPrune = Number(opts.maxPrune);
  if (!Number.isInteger(maxPrune) || maxPrune < 0) throw new UsageError(`--max-prune: expected a whole number, got ${JSON.stringify(opts.maxPrune)}`);
  const client = await connect(cmd.optsWithGlobals());
  const { watch: chokidar } = await import('chokidar');

  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const schedule = (why: string) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      running = running.then(() => applyOnce(client, dir, opts, maxPrune, out, why));
    }, debounceMs);
  };

  const watcher = chokidar(dir, {
    ignoreInitial: true,
    // Editors and git write through temporary files: wait until a file stops changing.
    awaitWriteFinish: { stabilityThreshold: Math.min(200, debounceMs), pollInterval: 50 },
    ignored: (p: string) => path.basename(p).startsWith('.') && p !== dir,
  });
  watcher.on('all', (event, file) => schedule(`${event} ${path.relative(dir, file)}`));
  await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
  out.err(`watching ${dir}${opts.git ? ` (pulling every ${opts.interval})` : ''}; Ctrl-C stops\n`);
  running = running.then(() => applyOnce(client, dir, opts, maxPrune, out, 'start'));

  let pullTimer: NodeJS.Timeout | undefined;
  if (opts.git) {
    pullTimer = setInterval(() => {
      running = running.then(async () => {
        const before = await revision(dir);
        try {
          await exec('git', ['-C', dir, 'pull', '--ff-only', '--quiet'], { timeout: 60_000 });
        } catch (e) {
          out.err(paint(out, 'yellow', `git pull failed: ${((e as { stderr?: string }).stderr || (e as Error).message).trim()}\n`));
        }
        // A pull that brought commits changes files: chokidar sees them and applies after the debounce.
        const after = await revision(dir);
        if (after !== before) out.err(`pulled ${after}\n`);
      });
    }, intervalMs);
  }

  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  clearTimeout(timer);
  clearInterval(pullTimer);
  await watcher.close();
  await running;
  client.close();
}

async function applyOnce(client: ApiClient, dir: string, opts: WatchOptions, maxPrune: number, out: Out, why: string): Promise<void> {
  const t0 = Date.now();
  const stamp = new Date().toISOString();
  try {
    const set = await loadManifests([dir], {
      recursive: true,
      hashFiles: true,
      hashing: imageHashing,
      clusterImages: async () => new Set((await client.list('Image')).map((r) => r.metadata.name)),
    });
    for (const w of set.warnings) out.err(paint(out, 'yellow', formatError(w)) + '\n');
    if (set.errors.length > 0) throw new ManifestSetError(set.errors);
    await uploadFiles(client, set.files);
    const rev = await revision(dir);
    const res = await client.apply({ desired: set.desired, applyset: opts.applyset, prune: !!opts.prune, maxPrune, dryRun: false, ...(rev ? { revision: rev } : {}) });
    const changed = res.results.filter((r) => r.action !== 'unchanged');
    out.write(`${stamp} applied (${why})${rev ? ` at ${rev}` : ''} in ${Date.now() - t0} ms: ${changed.length ? changed.map((r) => `${r.kind}/${r.name} ${r.action}`).join(', ') : 'no change'}\n`);
  } catch (e) {
    // A bad edit changes nothing: say what is wrong and keep watching.
    const msg = e instanceof ManifestSetError ? e.errors.map(formatError).join('\n') : e instanceof ApiError ? e.message : (e as Error).message;
    out.err(paint(out, 'red', `${stamp} not applied (${why}): nothing changed in the cluster\n${msg}\n`));
  }
}

/** The checkout's commit, "-dirty" when the tree has uncommitted changes; null outside git. */
async function revision(dir: string): Promise<string | null> {
  try {
    const { stdout: sha } = await exec('git', ['-C', dir, 'rev-parse', '--short=12', 'HEAD']);
    const { stdout: dirty } = await exec('git', ['-C', dir, 'status', '--porcelain', '--', '.']);
    return sha.trim() + (dirty.trim() ? '-dirty' : '');
  } catch {
    return null;
  }
}
