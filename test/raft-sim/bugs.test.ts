import { describe, it, expect } from 'vitest';
import type { Bugs } from '../../src/raft/core/index.js';
import { replayCommand, runSeed } from './simulator.js';

// The simulator must catch real Raft mistakes. Each one is switched on in the core (Config.bugs,
// test-only) and the default seeds are run until one fails; it must happen within 200 seeds.

const BUGS: [keyof Bugs, string][] = [
  ['commitOldTermByCount', 'committing an entry from an earlier term by counting replicas (figure 8)'],
  ['voteWithoutLogCheck', 'granting a vote without the log up-to-date check'],
  ['voteNotPersisted', 'not persisting the vote before answering'],
];

describe('the simulator catches known Raft mistakes', () => {
  for (const [bug, what] of BUGS) {
    it(`catches ${bug}: ${what}`, () => {
      for (let seed = 0; seed < 200; seed++) {
        const r = runSeed(seed, { bugs: { [bug]: true } });
        if (r.ok) continue;
        const why = r.failure!.split('\n')[0]!;
        console.log(`${bug}: caught by seed ${seed}: ${why}\n  replay: ${replayCommand(seed, bug)}`);
        // The same seed passes without the bug: the failure is the bug's doing.
        expect(runSeed(seed).ok).toBe(true);
        return;
      }
      expect.fail(`${bug} was not caught by seeds 0..199`);
    });
  }
});
