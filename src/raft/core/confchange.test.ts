import { describe, it, expect } from 'vitest';
import { Changer, decodeConfChange, encodeConfChange, restoreConf } from './confchange.js';
import { confStateOf } from './tracker.js';
import type { ConfChange, ConfState } from './types.js';

/** Applies changes one after another from `start`, returning each resulting ConfState. */
function run(start: ConfState, ...ccs: ConfChange[]): ConfState[] {
  let { config, progress } = restoreConf(start, 10, 4);
  return ccs.map((cc) => {
    ({ config, progress } = new Changer(config, progress, 10, 4).apply(cc));
    return confStateOf(config);
  });
}
const abc: ConfState = { voters: ['a', 'b', 'c'], learners: [] };

describe('conf changes', () => {
  it('simple changes add learners, promote them, and remove nodes', () => {
    expect(
      run(
        abc,
        { changes: [{ type: 'addLearner', node: 'd' }] },
        { changes: [{ type: 'addNode', node: 'd' }] },
        { changes: [{ type: 'removeNode', node: 'a' }] },
        { changes: [{ type: 'addLearner', node: 'b' }] }, // demote
      ),
    ).toEqual([
      { voters: ['a', 'b', 'c'], learners: ['d'] },
      { voters: ['a', 'b', 'c', 'd'], learners: [] },
      { voters: ['b', 'c', 'd'], learners: [] },
      { voters: ['c', 'd'], learners: ['b'] },
    ]);
  });

  it('refuses to change more than one voter without a joint configuration', () => {
    expect(() => run(abc, { changes: [{ type: 'removeNode', node: 'a' }, { type: 'addNode', node: 'x' }], transition: 'auto' })).not.toThrow();
    const { config, progress } = restoreConf(abc, 10, 4);
    expect(() => new Changer(config, progress, 10, 4).simple([{ type: 'removeNode', node: 'a' }, { type: 'addNode', node: 'x' }])).toThrow(
      /more than one voter/,
    );
  });

  it('enters a joint configuration and leaves it; demoted voters become learners on leaving', () => {
    const [joint, left] = run(
      abc,
      { changes: [{ type: 'addNode', node: 'd' }, { type: 'addLearner', node: 'a' }] },
      { changes: [] },
    );
    expect(joint).toEqual({
      voters: ['b', 'c', 'd'],
      votersOutgoing: ['a', 'b', 'c'],
      learners: [],
      learnersNext: ['a'],
      autoLeave: true,
    });
    expect(left).toEqual({ voters: ['b', 'c', 'd'], learners: ['a'] });
  });

  it('an explicit transition does not leave automatically', () => {
    const [joint] = run(abc, { transition: 'explicit', changes: [{ type: 'removeNode', node: 'c' }] });
    expect(joint!.autoLeave).toBe(false);
    expect(joint!.votersOutgoing).toEqual(['a', 'b', 'c']);
  });

  it('refuses invalid changes', () => {
    expect(() => run(abc, { changes: [{ type: 'removeNode', node: 'a' }] }, { changes: [{ type: 'removeNode', node: 'b' }] }, { changes: [{ type: 'removeNode', node: 'c' }] })).toThrow(
      /removed all voters/,
    );
    expect(() => run(abc, { changes: [] })).toThrow(/not joint/);
    expect(() => run(abc, { transition: 'explicit', changes: [{ type: 'addNode', node: 'd' }] }, { transition: 'explicit', changes: [{ type: 'addNode', node: 'e' }] })).toThrow(
      /already joint/,
    );
  });

  it('does not touch the configuration it started from', () => {
    const { config, progress } = restoreConf({ voters: ['a', 'b'], learners: ['c'] }, 10, 4);
    new Changer(config, progress, 10, 4).apply({ changes: [{ type: 'addNode', node: 'c' }] });
    expect(confStateOf(config)).toEqual({ voters: ['a', 'b'], learners: ['c'] });
    expect(progress.get('c')!.isLearner).toBe(true);
  });

  it('restores joint configurations and rejects inconsistent ones', () => {
    const cs: ConfState = { voters: ['b', 'c', 'd'], votersOutgoing: ['a', 'b', 'c'], learners: [], learnersNext: ['a'], autoLeave: true };
    expect(confStateOf(restoreConf(cs, 5, 4).config)).toEqual(cs);
    expect(() => restoreConf({ voters: ['a'], learners: ['a'] }, 5, 4)).toThrow(/both a learner and a voter/);
  });

  it('encodes and decodes ConfChanges, refusing garbage', () => {
    const cc: ConfChange = { transition: 'explicit', changes: [{ type: 'addLearner', node: 'x' }] };
    expect(decodeConfChange(encodeConfChange(cc))).toEqual(cc);
    expect(decodeConfChange(new TextEncoder().encode('{"changes":[{"type":"nuke","node":"x"}]}'))).toBeUndefined();
    expect(decodeConfChange(new Uint8Array([0xff]))).toBeUndefined();
  });
});
