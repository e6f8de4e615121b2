import { NotLeaderError, type ClusterLog, type ConfState, type Role } from '../raft/index.js';

// A worker takes no part in Raft: it follows the cluster through the cluster document. This is the
// face it shows where a voter shows its Raft node: never the leader, the leader the document
// names, the voters the document lists, a "log position" that is the document's freshness, and
// contact with the cluster as its connections to the voters say.

export interface ClusterFollowing {
  leader(): string | null;
  voters(): string[];
  rev(): number;
  loaded(): Promise<void>;
  /** When a voter was last heard from (ms since the epoch; 0: never). */
  lastVoterContact(): number;
  /** Silent this long, the voters are taken for gone (a worker hears them through peer pings). */
  voterTimeoutMs: number;
}

export class WorkerLog implements ClusterLog {
  readonly isLeader = false;
  readonly currentRole: Role | 'none' = 'none';
  readonly term = 0;

  constructor(private readonly f: ClusterFollowing) {}

  get leader(): string | null {
    return this.f.leader();
  }
  get membership(): ConfState {
    return { voters: this.f.voters(), learners: [] };
  }
  get commitIndex(): number {
    return this.f.rev();
  }
  get appliedIndex(): number {
    return this.f.rev();
  }
  get lastClusterContact(): number {
    return this.f.lastVoterContact();
  }
  get electionTimeoutMs(): number {
    return this.f.voterTimeoutMs;
  }
  status(): { commit: number } {
    return { commit: this.f.rev() };
  }
  recovered(): Promise<void> {
    return this.f.loaded();
  }
  propose(): Promise<never> {
    return Promise.reject(new NotLeaderError(this.f.leader()));
  }
  proposeConfChange(): Promise<never> {
    return Promise.reject(new NotLeaderError(this.f.leader()));
  }
  /** Reads on a worker are served from its replica; only the leader confirms them. */
  readBarrier(): Promise<void> {
    return Promise.reject(new NotLeaderError(this.f.leader()));
  }
  campaign(): void {}
  transferLeadership(): void {}
  async close(): Promise<void> {}
}
