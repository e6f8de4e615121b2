import { describe, it, expect } from 'vitest';
import { coverageShortfalls, runRange } from './seeds.js';
import type { SimResult } from './simulator.js';

// Seeds 250..499 of the default run (sim-a.test.ts has 0..249: two files, so both cores work).
// Each seed is a whole simulated cluster life (see simulator.ts): the safety invariants are checked
// after every step, convergence after healing, and the client history for linearizability. A
// failure prints the seed and the command that replays it.

const FROM = 250;
const TO = 500;
const CHUNK = 25;

describe(`simulation, seeds ${FROM}..${TO - 1}`, () => {
  const all: SimResult[] = [];
  for (let from = FROM; from < TO; from += CHUNK) {
    it(`seeds ${from}..${from + CHUNK - 1}`, () => {
      const { results, failures } = runRange(from, from + CHUNK);
      all.push(...results);
      expect(failures, failures.join('\n\n')).toEqual([]);
    });
  }

  it('exercised every fault and feature', () => {
    expect(coverageShortfalls(all)).toEqual([]);
  });
});
