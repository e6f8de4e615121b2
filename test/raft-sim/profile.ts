import { Rng } from './prng.js';

// What one simulation run looks like: cluster size, Raft settings, network behaviour, fault mix
// and workload. A seed stands for one profile, so a failing seed replays with the same knobs.

/** Every knob of one run. All derived from the seed unless overridden. */
export interface Profile {
  style: 'mixed' | 'churn';
  nodes: number;
  /** Spare node ids that membership changes can add. */
  spares: number;
  membership: boolean;
  preVote: boolean;
  checkQuorum: boolean;
  electionTick: number;
  heartbeatTick: number;
  maxInflight: number;
  maxSizePerMsg: number;
  /** Limit on the committed entries handed out in one Ready (so applying takes several). */
  maxCommittedSizePerReady: number;
  /** Whether the transport tells the leader how a snapshot transfer ended (reportSnapshot). */
  reportSnapshots: boolean;
  /** Simulated time units between ticks of a node (each node a little different). */
  tickEvery: [number, number];
  loss: number;
  duplicate: number;
  latency: [number, number];
  /** Chance that a message is held back much longer than usual (heavy reordering). */
  straggler: number;
  persistDelay: [number, number];
  /** Chance of a crash right after a persist, before the Ready's messages leave. */
  crashAfterPersist: number;
  /**
   * Targeted faults (a nemesis, as in Jepsen): the chance that a newly elected leader is crashed or
   * cut off within a few ticks (so it leaves entries on a minority: Raft paper figure 8), and that
   * a node crashes right after granting a vote and comes straight back (votes must be durable).
   */
  newLeaderFault: number;
  voteFault: number;
  /** The chance that a leader crashes right after its commit index moved (mid-replication). */
  commitFault: number;
  chaosEvery: [number, number];
  chaos: Record<ChaosAction, number>;
  /** Compact once this many applied entries are in the log; keep this many behind the snapshot. */
  compactEvery: number;
  compactKeep: number;
  clients: number;
  keys: number;
  opLimit: number;
  clientTimeout: number;
  clientGiveUp: number;
  /** At most this many writes per key may end with an unknown outcome. */
  maxUnknownPerKey: number;
  /** Events in the chaotic phase. */
  steps: number;
  /** Events, and simulated time, allowed in the healed phase to converge. */
  quiesceSteps: number;
  quiesceTime: number;
}

export type ChaosAction =
  | 'crash'
  | 'crashLeader'
  | 'partition'
  | 'oneWay'
  | 'isolate'
  | 'heal'
  | 'transfer'
  | 'reconfigure'
  | 'network'
  | 'idle';

/**
 * The profile a seed stands for: cluster size, features and fault mix all vary with the seed.
 * Two styles: 'mixed' draws every knob at random; 'churn' (a share of the seeds) keeps leaders
 * short-lived on small clusters with small messages, the conditions under which an old-term entry
 * can sit on a majority while the new leader's own entry does not (Raft paper, figure 8).
 */
export function profileFor(seed: number): Profile {
  const r = new Rng(seed ^ 0x5eed);
  const style = r.chance(0.4) ? 'churn' : 'mixed';
  const churn = style === 'churn';
  const nodes = churn ? (r.chance(0.85) ? 3 : 5) : r.chance(0.5) ? 3 : 5;
  const membership = r.chance(churn ? 0.15 : 0.45);
  const tick = 10;
  return {
    style,
    nodes,
    spares: membership ? 2 : 0,
    membership,
    preVote: r.chance(0.6),
    checkQuorum: r.chance(0.6),
    electionTick: 10,
    heartbeatTick: r.pick([1, 2, 3]),
    maxInflight: r.pick([1, 4, 64]),
    maxSizePerMsg: churn ? r.pick([1, 1, 300]) : r.pick([1, 300, 4096, Infinity]),
    tickEvery: [tick - 1, tick + 1],
    loss: r.pick([0, 0.01, 0.05, 0.15]),
    duplicate: r.pick([0, 0.02, 0.1]),
    latency: r.pick<[number, number]>([
      [1, 3],
      [1, 8],
      [2, 20],
      [1, 40],
    ]),
    straggler: r.pick([0, 0.01, 0.03]),
    persistDelay: r.pick<[number, number]>([
      [0, 0],
      [0, 3],
      [1, 15],
    ]),
    crashAfterPersist: r.pick([0, 0.002, 0.01]),
    newLeaderFault: churn ? 0.8 : r.pick([0, 0.1, 0.3]),
    voteFault: churn ? 0.3 : r.pick([0, 0.1, 0.3]),
    commitFault: churn ? 0.5 : r.pick([0, 0.02, 0.1]),
    chaosEvery: churn ? [100, 400] : [30, 250],
    chaos: churn
      ? { crash: 2, crashLeader: 4, partition: 1, oneWay: 1, isolate: 4, heal: 1, transfer: 1, reconfigure: membership ? 6 : 0, network: 1, idle: 2 }
      : { crash: 3, crashLeader: 4, partition: 2, oneWay: 2, isolate: 2, heal: 3, transfer: 1, reconfigure: membership ? 10 : 0, network: 1, idle: 2 },
    compactEvery: r.pick([4, 16, 64]),
    compactKeep: r.pick([0, 2, 10]),
    clients: r.range(2, 5),
    keys: r.range(1, 4),
    opLimit: 400,
    clientTimeout: r.range(100, 300),
    clientGiveUp: 1200,
    maxUnknownPerKey: 6,
    steps: 20_000,
    quiesceSteps: 200_000,
    quiesceTime: 20_000,
    maxCommittedSizePerReady: r.pick([Infinity, Infinity, 200]),
    reportSnapshots: r.chance(0.7),
  };
}

/** The profile as one line of JSON (Infinity spelled out). */
export function describeProfile(p: Profile): string {
  return JSON.stringify(p, (_k, v: unknown) => (v === Infinity ? 'Infinity' : v));
}
