import { describe, expect, it } from 'vitest';
import { deadMansSwitchSeconds, Fence, WORKER_CONFIRM_GAP_MS, type FenceFacts, type FenceRole, type GateCheck } from './fencing.js';

// Table tests of fencing with an injected clock: each row is a moment (ms since the node
// started; a round asked at the very start proves nothing newer than the start), the facts the node sees then, and what the gate must say. A node cut off for
// --fence-after stops its VMs; a node back in touch starts nothing before it has proof (a
// confirmation round that began after it came back) that its view is current.

const TIMEOUT = 10_000; // --node-timeout
const FENCE = 20_000; // --fence-after
const T0 = 1_000_000;

type Step = {
  at: number;
  facts?: Partial<FenceFacts>;
  /** A voter's confirmation round, asked at the last `confirm`, answers now. */
  roundDone?: 'ok' | 'failed';
  want: Partial<GateCheck>;
};

function run(role: FenceRole, steps: Step[]): void {
  let now = T0;
  const fence = new Fence({ role, startedAt: T0, nodeTimeoutMs: TIMEOUT, fenceAfterMs: FENCE, now: () => now });
  let asked: number | undefined;
  for (const [i, s] of steps.entries()) {
    now = T0 + s.at;
    if (s.roundDone === 'ok') fence.confirmed(asked!);
    if (s.roundDone === 'failed') fence.confirmFailed();
    // In touch (contact now) unless the row says when contact was last.
    const facts: FenceFacts = { inCluster: true, lastContact: now, leaderKnown: true, syncedAt: 0, canConfirm: true, ...s.facts };
    const g = fence.check(facts);
    if (g.confirm) asked = g.at;
    expect({ step: i, ...pick(g, Object.keys(s.want) as (keyof GateCheck)[]) }).toEqual({ step: i, ...s.want });
  }
}

function pick(g: GateCheck, keys: (keyof GateCheck)[]): Partial<GateCheck> {
  return Object.fromEntries(keys.map((k) => [k, g[k]]));
}

const cut = (since: number): Partial<FenceFacts> => ({ lastContact: T0 + since });

describe('Fence (voter)', () => {
  const cases: [string, Step[]][] = [
    [
      'a starting node starts nothing until a confirmation round that began after its start succeeds',
      [
        { at: 1, want: { fenced: false, mayStart: false, confirm: true, why: 'catching up' } },
        { at: 100, want: { mayStart: false, confirm: false } }, // one round at a time
        { at: 200, roundDone: 'ok', want: { fenced: false, mayStart: true, confirm: false } },
      ],
    ],
    [
      'a failed round (no leader answered) is asked again',
      [
        { at: 1, want: { mayStart: false, confirm: true } },
        { at: 100, roundDone: 'failed', want: { mayStart: false, confirm: true } },
        { at: 200, roundDone: 'ok', want: { mayStart: true } },
      ],
    ],
    [
      'no leader known: nothing starts and no round is asked',
      [{ at: 0, facts: { leaderKnown: false }, want: { mayStart: false, confirm: false, fenced: false } }],
    ],
    [
      'cut off for --fence-after: fenced (stop every VM), and it asks nothing while fenced',
      [
        { at: 1, want: { confirm: true } },
        { at: 100, roundDone: 'ok', want: { mayStart: true } },
        { at: 1_000, facts: cut(1_000), want: { fenced: false, mayStart: true } },
        { at: 1_000 + TIMEOUT + 1, facts: cut(1_000), want: { fenced: false, mayStart: false } }, // out of touch: no new starts
        { at: 1_000 + FENCE, facts: cut(1_000), want: { fenced: false } },
        { at: 1_000 + FENCE + 1, facts: cut(1_000), want: { fenced: true, mayStart: false, confirm: false, why: 'no contact for 20 s' } },
      ],
    ],
    [
      'a returning node starts nothing until a round asked after its return succeeds (a round from before does not count)',
      [
        { at: 1, want: { confirm: true } },
        { at: 100, roundDone: 'ok', want: { mayStart: true } },
        { at: 1_000, facts: cut(1_000), want: { mayStart: true } },
        { at: 1_000 + FENCE + 1, facts: cut(1_000), want: { fenced: true } },
        { at: 30_000, want: { fenced: false, mayStart: false, confirm: true } }, // back in touch
        { at: 30_100, roundDone: 'ok', want: { fenced: false, mayStart: true } },
      ],
    ],
    [
      'a stalled event loop counts as time out of touch',
      [
        { at: 1, want: { confirm: true } },
        { at: 100, roundDone: 'ok', want: { mayStart: true } },
        { at: 100 + TIMEOUT + 1, want: { fenced: false, mayStart: false, confirm: true } },
        // That round was asked in the very moment the stall was seen: it proves nothing newer.
        { at: 100 + TIMEOUT + 50, roundDone: 'ok', want: { mayStart: false, confirm: true } },
        { at: 100 + TIMEOUT + 90, roundDone: 'ok', want: { mayStart: true } },
      ],
    ],
    ['not in a cluster yet: neither fenced nor allowed to start', [{ at: 0, facts: { inCluster: false }, want: { fenced: false, mayStart: false, confirm: false, why: 'not in a cluster yet' } }]],
  ];
  for (const [name, steps] of cases) it(name, () => run('voter', steps));
});

describe('Fence (worker)', () => {
  const cases: [string, Step[]][] = [
    [
      'a worker is caught up by a document sync that finished after it came into touch',
      [
        { at: 0, facts: { syncedAt: T0 - 1 }, want: { mayStart: false, confirm: true } },
        { at: 100, facts: { syncedAt: T0 - 1 }, want: { mayStart: false, confirm: false } }, // asked at most every 2 s
        { at: WORKER_CONFIRM_GAP_MS + 1, facts: { syncedAt: T0 - 1 }, want: { confirm: true } },
        { at: WORKER_CONFIRM_GAP_MS + 100, facts: { syncedAt: T0 + WORKER_CONFIRM_GAP_MS + 50 }, want: { mayStart: true } },
      ],
    ],
    [
      'a worker whose documents are not open asks nothing',
      [{ at: 0, facts: { canConfirm: false }, want: { mayStart: false, confirm: false } }],
    ],
    [
      'a worker cut off from the voters is fenced after --fence-after; a sync from before does not count when it returns',
      [
        { at: 100, facts: { syncedAt: T0 + 50 }, want: { mayStart: true } },
        { at: 1_000, facts: { ...cut(1_000), syncedAt: T0 + 50 }, want: { mayStart: true } },
        { at: 1_000 + FENCE + 1, facts: { ...cut(1_000), syncedAt: T0 + 50 }, want: { fenced: true, mayStart: false } },
        { at: 40_000, facts: { syncedAt: T0 + 50 }, want: { fenced: false, mayStart: false, confirm: true } },
        { at: 40_200, facts: { syncedAt: T0 + 40_100 }, want: { mayStart: true } },
      ],
    ],
  ];
  for (const [name, steps] of cases) it(name, () => run('worker', steps));
});

describe('Fence.changed', () => {
  it('reports each change of the gate once, and a return to touch after fencing', () => {
    const f = new Fence({ role: 'voter', startedAt: 0, nodeTimeoutMs: TIMEOUT, fenceAfterMs: FENCE, now: () => 0 });
    expect(f.changed({ fenced: false, mayStart: false })).toEqual({ changed: true, backInTouch: false });
    expect(f.changed({ fenced: false, mayStart: false })).toEqual({ changed: false, backInTouch: false });
    expect(f.changed({ fenced: true, mayStart: false })).toEqual({ changed: true, backInTouch: false });
    expect(f.changed({ fenced: false, mayStart: false })).toEqual({ changed: true, backInTouch: true });
  });
});

describe('deadMansSwitchSeconds', () => {
  const cases: [string, { otherNodes: boolean; fenceAfterMs: number }, number][] = [
    ['alone: VMs keep running while the daemon is away (nowhere else to run them)', { otherNodes: false, fenceAfterMs: 20_000 }, 0],
    ['with others: the shim stops its VM after --fence-after', { otherNodes: true, fenceAfterMs: 20_000 }, 20],
    ['rounded up to whole seconds', { otherNodes: true, fenceAfterMs: 2_500 }, 3],
    ['at least one second', { otherNodes: true, fenceAfterMs: 100 }, 1],
  ];
  for (const [name, input, want] of cases) it(name, () => expect(deadMansSwitchSeconds(input)).toBe(want));
});
