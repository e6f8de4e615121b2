import { describe, expect, it } from 'vitest';
import { until } from './until.js';

describe('until', () => {
  it('resolves with the first truthy value, sync or async', async () => {
    let n = 0;
    expect(await until('n to reach 3', () => ++n >= 3 && n, 1000, 1)).toBe(3);
    expect(await until('a value', async () => 'x', 1000)).toBe('x');
  });

  it('retries while fn throws, and on timeout names what, the timeout and the last error', async () => {
    let calls = 0;
    const flaky = () => {
      if (++calls < 3) throw new Error('not yet');
      return calls;
    };
    expect(await until('the third call', flaky, 1000, 1)).toBe(3);
    const refuse = () => {
      throw new Error('refused');
    };
    await expect(until('the impossible', refuse, 30, 5)).rejects.toThrow('timed out after 30 ms waiting for the impossible (last error: Error: refused)');
  });

  it('reports the last value when fn last returned one', async () => {
    let calls = 0;
    const count = () => {
      if (++calls === 1) throw new Error('early');
      return 0;
    };
    await expect(until('a count', count, 30, 5)).rejects.toThrow('timed out after 30 ms waiting for a count (last value: 0)');
  });

  it('with intervalMs 0 asks again on each turn of the event loop', async () => {
    let turns = 0;
    let stop = false;
    const turn = () => setImmediate(() => (turns++, stop || turn()));
    turn();
    const seen = await until('fifty turns', () => turns >= 50 && turns, 1000, 0);
    stop = true;
    expect(seen).toBeLessThanOrEqual(51); // seen on the turn it became true, not a timer later
  });
});
