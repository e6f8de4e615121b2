import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, expect } from 'vitest';
import type { Bugs } from '../../src/raft/core/index.js';
import { describeProfile, runSeed } from './simulator.js';

// Replays one seed with the full event log:
//   SEED=1234 [BUG=commitOldTermByCount] npx vitest run test/raft-sim/replay.test.ts
// The log goes to a file (it is long); the test fails if the run does.

const seed = process.env.SEED;

describe('replay', () => {
  it.skipIf(seed === undefined)(`replay seed ${seed ?? '(set SEED)'}`, () => {
    const s = Number(seed);
    const bug = process.env.BUG as keyof Bugs | undefined;
    const lines: string[] = [];
    const r = runSeed(s, { log: (l) => lines.push(l), ...(bug ? { bugs: { [bug]: true } } : {}) });
    const file = join(tmpdir(), `raft-sim-seed-${s}${bug ? `-${bug}` : ''}.log`);
    writeFileSync(file, `${lines.join('\n')}\n\n${r.ok ? 'ok' : `FAILED: ${r.failure}`}\n`);
    console.log(`seed ${s}: ${r.ok ? 'ok' : 'FAILED'}; profile ${describeProfile(r.profile)}\nstats ${JSON.stringify(r.stats)}\nevent log: ${file}`);
    expect(r.failure).toBeUndefined();
  });
});
