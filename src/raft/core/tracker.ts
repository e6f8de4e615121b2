import { Progress } from './progress.js';
import { jointCommitted, jointVote, type JointConfig, type VoteResult } from './quorum.js';
import type { ConfState } from './types.js';

// The leader's view of the membership and of each member's log, after etcd's tracker/tracker.go.

/** A membership configuration in the form the quorum code uses. Treated as immutable. */
export interface TrackerConfig {
  voters: JointConfig;
  /** Non-voters. Never also voters (in either half). */
  learners: ReadonlySet<string>;
  /** Outgoing voters that become learners when the joint configuration is left. */
  learnersNext: ReadonlySet<string>;
  autoLeave: boolean;
}

export const EMPTY_CONFIG: TrackerConfig = {
  voters: [new Set(), new Set()],
  learners: new Set(),
  learnersNext: new Set(),
  autoLeave: false,
};

export function isJoint(c: TrackerConfig): boolean {
  return c.voters[1].size > 0;
}

const sorted = (s: Iterable<string>): string[] => [...s].sort();

export function confStateOf(c: TrackerConfig): ConfState {
  const cs: ConfState = { voters: sorted(c.voters[0]), learners: sorted(c.learners) };
  if (isJoint(c)) {
    cs.votersOutgoing = sorted(c.voters[1]);
    cs.learnersNext = sorted(c.learnersNext);
    cs.autoLeave = c.autoLeave;
  }
  return cs;
}

export class ProgressTracker {
  config: TrackerConfig = EMPTY_CONFIG;
  /** Every voter (either half) and learner has one. */
  progress: ReadonlyMap<string, Progress> = new Map();
  /** Member ids in sorted order, so that every node visits peers in the same order. */
  ids: readonly string[] = [];
  /** Votes received in the current election (or pre-election). */
  readonly votes = new Map<string, boolean>();

  constructor(readonly maxInflight: number) {}

  setConfig(config: TrackerConfig, progress: ReadonlyMap<string, Progress>): void {
    this.config = config;
    this.progress = progress;
    this.ids = sorted(progress.keys());
  }

  confState(): ConfState {
    return confStateOf(this.config);
  }

  /** A single voter (no joint configuration): it is its own quorum. */
  isSingleton(): boolean {
    return this.config.voters[0].size === 1 && this.config.voters[1].size === 0;
  }

  isVoter(id: string): boolean {
    return this.config.voters[0].has(id) || this.config.voters[1].has(id);
  }

  /** Voters of both halves, sorted. */
  voterIds(): string[] {
    return sorted(new Set([...this.config.voters[0], ...this.config.voters[1]]));
  }

  /** The highest index replicated on a quorum. */
  committed(): number {
    return jointCommitted(this.config.voters, (id) => this.progress.get(id)?.match);
  }

  /** Whether a quorum was heard from recently (check-quorum). */
  quorumActive(): boolean {
    const votes = new Map<string, boolean>();
    for (const [id, pr] of this.progress) if (!pr.isLearner) votes.set(id, pr.recentActive);
    return jointVote(this.config.voters, votes) === 'won';
  }

  resetVotes(): void {
    this.votes.clear();
  }

  /** Records id's answer; only the first answer from each voter counts. */
  recordVote(id: string, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  tallyVotes(): { granted: number; rejected: number; result: VoteResult } {
    let granted = 0;
    let rejected = 0;
    for (const id of this.progress.keys()) {
      const v = this.votes.get(id);
      if (v === undefined || !this.isVoter(id)) continue;
      if (v) granted++;
      else rejected++;
    }
    return { granted, rejected, result: this.voteResult(this.votes) };
  }

  voteResult(votes: ReadonlyMap<string, boolean>): VoteResult {
    return jointVote(this.config.voters, votes);
  }
}
