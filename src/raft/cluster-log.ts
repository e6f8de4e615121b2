import type { ConfChange, ConfState, Role } from './core/index.js';

// What a node needs of the cluster's log, whatever follows it: a voter's Raft node, or a worker
// that follows the cluster through the cluster document (it never leads and proposes nothing).
// Everything above consensus (the API's service, the leader's duties, fencing) talks to this.

export interface ClusterLog {
  readonly term: number;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly isLeader: boolean;
  /** The leader as this node knows it, or null. */
  readonly leader: string | null;
  readonly currentRole: Role | 'none';
  readonly membership: ConfState;
  /** When this node last knew itself part of a working cluster (ms since the epoch; 0: never). */
  readonly lastClusterContact: number;
  /** Silent this long, the leader is taken for gone (Raft's election timeout, for a voter). */
  readonly electionTimeoutMs: number;
  /** Appends a command; resolves with the state machine's result once it is applied here. */
  propose(data: Uint8Array): Promise<{ index: number; result: unknown }>;
  proposeConfChange(cc: ConfChange): Promise<{ index: number; result: unknown }>;
  /** ReadIndex: resolves once this node's state reflects every write committed before the call. */
  readBarrier(timeoutMs?: number): Promise<void>;
  /** Resolves once this node has re-applied what it had committed before it stopped. */
  recovered(): Promise<void>;
  /** The commit index, and on a leader its view of every member's log. */
  status(): { commit: number; progress?: Record<string, { match: number; recentActive: boolean }> };
  /** Starts an election now (a one-voter cluster need not wait out a timeout). */
  campaign(): void;
  transferLeadership(to: string): void;
  close(): Promise<void>;
}
