import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type { Bugs } from '../src/raft/core/index.js';
import { describeFailure } from '../test/raft-sim/seeds.js';
import { describeProfile, replayCommand, runSeed } from '../test/raft-sim/simulator.js';

// The Raft simulation soak: many seeds of test/raft-sim on every core; then the fault runs on
// real node processes (fault-soak.ts).
//
//   node dist/bench/soak.js [--seeds 20000] [--from 0] [--jobs N] [--bug NAME] [--max-failures 20]
//   node dist/bench/soak.js --seed 1234 [--bug NAME] [--verbose]     replay one seed (--verbose: every event)
//
// Prints progress, then every failing seed with the command that replays it; exits 1 on failure.

interface Args {
  seeds: number;
  from: number;
  jobs: number;
  seed: number | undefined;
  bug: keyof Bugs | undefined;
  verbose: boolean;
  maxFailures: number;
  /** The fault runs on real processes (fault-soak.ts): after the simulation, only them, or not. */
  faults: 'also' | 'only' | 'no';
}

const BUGS: readonly (keyof Bugs)[] = ['commitOldTermByCount', 'voteWithoutLogCheck', 'voteNotPersisted'];

function parseArgs(argv: string[]): Args {
  const args: Args = {
    seeds: 20_000,
    from: 0,
    jobs: Math.max(1, availableParallelism()),
    seed: undefined,
    bug: undefined,
    verbose: false,
    maxFailures: 20,
    faults: 'also',
  };
  const num = (flag: string, v: string | undefined): number => {
    const n = Number(v);
    if (v === undefined || !Number.isSafeInteger(n) || n < 0) throw new Error(`${flag} needs a non-negative integer, got ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] = a.includes('=') ? (a.split('=', 2) as [string, string]) : [a, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    switch (flag) {
      case '--seeds':
        args.seeds = num(flag, value());
        break;
      case '--from':
        args.from = num(flag, value());
        break;
      case '--jobs':
        args.jobs = Math.max(1, num(flag, value()));
        break;
      case '--seed':
        args.seed = num(flag, value());
        break;
      case '--max-failures':
        args.maxFailures = Math.max(1, num(flag, value()));
        break;
      case '--bug': {
        const b = value();
        if (!BUGS.includes(b as keyof Bugs)) throw new Error(`--bug must be one of ${BUGS.join(', ')}`);
        args.bug = b as keyof Bugs;
        break;
      }
      case '--verbose':
        args.verbose = true;
        break;
      case '--faults':
        args.faults = 'only';
        break;
      case '--no-faults':
        args.faults = 'no';
        break;
      case '--help':
      case '-h':
        console.log('usage: node dist/bench/soak.js [--seeds N] [--from N] [--jobs N] [--bug NAME] [--faults | --no-faults] | --seed N [--verbose]');
        process.exit(0);
        break;
      default:
        throw new Error(`unknown argument ${a}`);
    }
  }
  return args;
}

/** A worker's answer for one seed. */
interface SeedDone {
  seed: number;
  ok: boolean;
  failure: string | undefined;
}

interface WorkerInput {
  bug: keyof Bugs | undefined;
}

function bugsOf(bug: keyof Bugs | undefined): { bugs?: Bugs } {
  return bug === undefined ? {} : { bugs: { [bug]: true } };
}

function workerMain(): void {
  const { bug } = workerData as WorkerInput;
  const port = parentPort!;
  port.on('message', (seeds: number[]) => {
    const done: SeedDone[] = seeds.map((seed) => {
      const r = runSeed(seed, bugsOf(bug));
      return { seed, ok: r.ok, failure: r.ok ? undefined : describeFailure(r, bug) };
    });
    port.postMessage(done);
  });
}

function replayOne(args: Args): number {
  const seed = args.seed!;
  const r = runSeed(seed, { ...bugsOf(args.bug), ...(args.verbose ? { log: (l: string) => console.log(l) } : {}) });
  console.log(`seed ${seed}: ${r.ok ? 'ok' : 'FAILED'}`);
  console.log(`profile ${describeProfile(r.profile)}`);
  console.log(`stats ${JSON.stringify(r.stats)}`);
  console.log(`trace ${r.traceHash}`);
  if (!r.ok) {
    console.log(describeFailure(r, args.bug));
    if (!args.verbose) console.log(`(add --verbose for every event: ${replayCommand(seed, args.bug)})`);
  }
  return r.ok ? 0 : 1;
}

async function soak(args: Args): Promise<number> {
  const end = args.from + args.seeds;
  const batch = 20;
  let next = args.from;
  let finished = 0;
  const failures: SeedDone[] = [];
  const started = Date.now();
  let lastReport = started;
  const jobs = Math.min(args.jobs, Math.ceil(args.seeds / batch) || 1);
  console.log(
    `raft simulation soak: seeds ${args.from}..${end - 1} on ${jobs} worker(s)${args.bug ? `, with bug ${args.bug}` : ''}`,
  );

  const report = (final: boolean): void => {
    const now = Date.now();
    if (!final && now - lastReport < 2000) return;
    lastReport = now;
    const secs = (now - started) / 1000;
    const rate = finished / Math.max(secs, 0.001);
    const eta = rate > 0 ? (args.seeds - finished) / rate : 0;
    console.log(
      `  ${finished}/${args.seeds} seeds, ${failures.length} failed, ${rate.toFixed(0)} seeds/s, ` +
        `${secs.toFixed(0)} s elapsed${final ? '' : `, ~${eta.toFixed(0)} s to go`}`,
    );
  };

  await new Promise<void>((resolve, reject) => {
    let live = 0;
    const stopping = (): boolean => failures.length >= args.maxFailures;
    for (let w = 0; w < jobs; w++) {
      const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { bug: args.bug } satisfies WorkerInput });
      live++;
      const feed = (): void => {
        if (next >= end || stopping()) {
          void worker.terminate();
          return;
        }
        const seeds: number[] = [];
        while (seeds.length < batch && next < end) seeds.push(next++);
        worker.postMessage(seeds);
      };
      worker.on('message', (done: SeedDone[]) => {
        for (const d of done) {
          finished++;
          if (!d.ok) {
            failures.push(d);
            console.log(`\nFAIL ${d.failure}\n`);
          }
        }
        report(false);
        feed();
      });
      worker.on('error', reject);
      worker.on('exit', () => {
        if (--live === 0) resolve();
      });
      feed();
    }
  });

  report(true);
  if (failures.length === 0) {
    console.log(`all ${finished} seeds passed`);
    return 0;
  }
  failures.sort((a, b) => a.seed - b.seed);
  console.log(`\n${failures.length} seed(s) failed${failures.length >= args.maxFailures ? ' (stopped early)' : ''}:`);
  for (const f of failures) console.log(`  seed ${f.seed}: ${replayCommand(f.seed, args.bug)}`);
  return 1;
}

if (isMainThread) {
  let args: Args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    console.error(String(err instanceof Error ? err.message : err));
    process.exit(2);
  }
  if (args.seed !== undefined) process.exit(replayOne(args));
  const simulation = args.faults === 'only' ? Promise.resolve(0) : soak(args);
  const all = simulation.then(async (code) => {
    if (args.faults === 'no') return code;
    const { faultSoak, FAULT_SOAK_DEFAULTS } = await import('./fault-soak.js');
    return Math.max(code, await faultSoak(FAULT_SOAK_DEFAULTS));
  });
  all.then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
} else {
  workerMain();
}
