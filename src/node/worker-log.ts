import type { ConfChange, ConfState, Role } from '../raft/index.js';
import { NotLeaderError } from '../raft/index.js';

// A worker takes no part in Raft: it follows the cluster through the cluster document. This is the
// face it shows where a voter shows its Raft node: never the leader, the leader the document
// names, the voters the document lists, and a "log position" that is the document's freshness.

export interface ClusterFollowing {
  leader(): string | null;
  voters(): string[];
  rev(): number;
  loaded(): Promise<void>;
}

export class WorkerLog {
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
  status(): { commit: number; progress?: undefined } {
    return { commit: this.f.rev() };
  }
  recovered(): Promise<void> {
    return this.f.loaded();
  }
  propose(): Promise<never> {
    return Promise.reject(new NotLeaderError(this.f.leader()));
  }
  proposeConfChange(_cc: ConfChange): Promise<never> {
    return Promise.reject(new NotLeaderError(this.f.leader()));
  }
  campaign(): void {}
  async close(): Promise<void> {}
}
