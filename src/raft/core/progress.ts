import { Inflights } from './inflights.js';

// What the leader knows about one follower's log, after etcd's tracker/progress.go. Three states
// decide how the leader sends:
// - probe: one MsgApp at a time until the follower answers, to find where the logs match;
// - replicate: the logs match up to `match`; MsgApps are pipelined optimistically (`next` moves on
//   at send time) within a window of `maxInflight` unacknowledged messages;
// - snapshot: the follower needs entries that are compacted away; nothing is sent until the
//   snapshot is reported applied or failed.

export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export class Progress {
  /** Highest index known to be in the follower's log. */
  match = 0;
  /** Next index to send. */
  next: number;
  state: ProgressState = 'probe';
  /** In 'snapshot': the index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** In 'snapshot': election timeouts passed without news of it (see Raft.tickHeartbeat). */
  snapshotWait = 0;
  /** Heard from within the current election timeout (check-quorum; whether to send snapshots). */
  recentActive = false;
  /** In 'probe': a probe is out, wait for its answer (or a heartbeat response) before the next. */
  probeSent = false;
  isLearner: boolean;
  readonly inflights: Inflights;

  constructor(next: number, maxInflight: number | Inflights, isLearner: boolean) {
    this.next = next;
    this.isLearner = isLearner;
    this.inflights = typeof maxInflight === 'number' ? new Inflights(maxInflight) : maxInflight;
  }

  clone(): Progress {
    const p = new Progress(this.next, this.inflights.clone(), this.isLearner);
    p.match = this.match;
    p.state = this.state;
    p.pendingSnapshot = this.pendingSnapshot;
    p.snapshotWait = this.snapshotWait;
    p.recentActive = this.recentActive;
    p.probeSent = this.probeSent;
    return p;
  }

  /** Forgets everything but membership (a new term): probe from `next`. */
  reset(match: number, next: number, recentActive: boolean): void {
    this.resetState('probe');
    this.match = match;
    this.next = next;
    this.recentActive = recentActive;
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.snapshotWait = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    // After a snapshot, probe from just after it: the follower has (or soon has) everything up to it.
    const after = this.state === 'snapshot' ? this.pendingSnapshot : 0;
    this.resetState('probe');
    this.next = Math.max(this.match + 1, after + 1);
  }

  becomeReplicate(): void {
    this.resetState('replicate');
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState('snapshot');
    this.pendingSnapshot = snapshotIndex;
  }

  /** The follower acknowledged everything up to n. Returns whether `match` moved. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /**
   * The follower rejected a MsgApp whose previous entry was `rejected`; `matchHint` is the highest
   * index that may still match. Returns false if the rejection is stale (we already moved on).
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === 'replicate') {
      // Pipelined: a rejection at or below match is an old message, anything else means go back.
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    // Probing sends one message at a time, at next - 1; anything else is stale.
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  /** A MsgApp carrying entries up to `lastIndex` (count `entries`) went out. */
  sentEntries(entries: number, lastIndex: number): void {
    if (this.state === 'replicate') {
      if (entries > 0) {
        this.next = lastIndex + 1;
        this.inflights.add(lastIndex);
      }
    } else if (this.state === 'probe') {
      this.probeSent = true;
    }
  }

  /** Whether the leader must hold back MsgApps to this follower. */
  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflights.full();
      case 'snapshot':
        return true;
    }
  }
}
