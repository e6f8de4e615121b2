import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { ApiError, type ApplyResponse } from '../api/index.js';
import type { Plan } from '../manifest/index.js';
import { parseDuration } from '../state/index.js';
import { connect } from './connection.js';
import { loadAgainst, uploadFiles } from './manifests.js';
import { terminal, toJson, UsageError } from './output.js';

// `blixard apply`: the whole set in one request, committed as one entry, or nothing.

interface ApplyOptions {
  filename?: string[];
  recursive?: boolean;
  plan?: string;
  prune?: boolean;
  maxPrune: string;
  applyset: string;
  dryRun?: boolean;
  wait?: boolean;
  timeout: string;
  output?: string;
}

export default async function apply(opts: ApplyOptions, cmd: Command): Promise<void> {
  const out = terminal();
  if (opts.output !== undefined && opts.output !== 'json') throw new UsageError(`-o: expected json, got ${JSON.stringify(opts.output)}`);
  if (!!opts.plan === !!opts.filename?.length) throw new UsageError('expected either -f PATH or --plan FILE');
  if (opts.plan && opts.prune) throw new UsageError('--prune is decided when the plan is made (`diff --prune --out FILE`), not with --plan');
  const maxPrune = Number(opts.maxPrune);
  if (!Number.isInteger(maxPrune) || maxPrune < 0) throw new UsageError(`--max-prune: expected a whole number, got ${JSON.stringify(opts.maxPrune)}`);
  let timeoutMs: number;
  try {
    timeoutMs = parseDuration(opts.timeout);
  } catch (e) {
    throw new UsageError(`--timeout: ${(e as Error).message}`);
  }

  const client = await connect(cmd.optsWithGlobals());
  try {
    let res: ApplyResponse;
    let vms: string[];
    try {
      if (opts.plan) {
        const plan = await readPlan(opts.plan);
        vms = plan.changes.filter((c) => c.kind === 'VirtualMachine' && c.action !== 'prune').map((c) => c.name);
        res = await client.apply({ plan, maxPrune, dryRun: !!opts.dryRun });
      } else {
        const set = await loadAgainst(client, opts.filename, !!opts.recursive, out);
        vms = set.desired.filter((d) => d.kind === 'VirtualMachine').map((d) => d.name);
        if (!opts.dryRun) await uploadFiles(client, set.files);
        res = await client.apply({ desired: set.desired, applyset: opts.applyset, prune: !!opts.prune, maxPrune, dryRun: !!opts.dryRun });
      }
    } catch (e) {
      const prune = e instanceof ApiError ? (e.details as { prune?: string[] } | undefined)?.prune : undefined;
      if (prune) for (const p of prune) out.err(`${p} would be pruned\n`);
      throw e;
    }
    if (opts.output === 'json') out.write(toJson({ results: res.results, ...(res.dryRun ? { dryRun: true } : {}) }));
    else for (const r of res.results) out.write(`${r.kind}/${r.name} ${r.action}${res.dryRun ? ' (dry run)' : ''}\n`);
    // Loaded only for --wait (every module a command imports is paid at start-up).
    if (opts.wait && !res.dryRun) await (await import('./wait.js')).waitForVms(client, vms, timeoutMs);
  } finally {
    client.close();
  }
}

async function readPlan(file: string): Promise<Plan> {
  let plan: Plan;
  try {
    plan = JSON.parse(await readFile(file, 'utf8')) as Plan;
  } catch (e) {
    throw new UsageError(`--plan ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : 'not a saved plan (invalid JSON)'}`);
  }
  if (plan?.kind !== 'Plan' || !Array.isArray(plan.changes)) throw new UsageError(`--plan ${file}: not a saved plan (make one with \`blixard diff -f ... --out FILE\`)`);
  return plan;
}
