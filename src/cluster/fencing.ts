// Fencing (SPEC section 4): a node cut off from the cluster for longer than --fence-after stops its
// own VMs, and it starts nothing unless it is in touch and caught up. Pure: time comes from the
// injected clock, facts from the caller; the caller carries out what it is told (a confirmation
// round, stopping VMs).

export type FenceRole = 'voter' | 'worker';

/** What the reconciler is told (reconciler/node-reconciler.ts `gate`). */
export interface Gate {
  /** Cut off for longer than --fence-after: stop every VM, start none. */
  fenced: boolean;
  /** In touch and caught up: VMs may be created and started. */
  mayStart: boolean;
  why?: string;
}

export interface FenceFacts {
  /** This node belongs to a cluster (its store has a cluster id). */
  inCluster: boolean;
  /** When this node last knew itself part of a working cluster (ms; 0: never). */
  lastContact: number;
  /** A voter: a leader is known (a confirmation round can be asked of it). */
  leaderKnown: boolean;
  /** A worker: when its last sync of the cluster document finished (ms; 0: never). */
  syncedAt: number;
  /** Whether a confirmation round can be started now (a worker's documents are open). */
  canConfirm: boolean;
}

export interface FenceOptions {
  role: FenceRole;
  /** The start of this process counts as a loss of touch: the store on disk may be old. */
  startedAt: number;
  nodeTimeoutMs: number;
  fenceAfterMs: number;
  now: () => number;
}

export interface GateCheck extends Gate {
  /**
   * Start a confirmation round now: a voter asks the leader for a ReadIndex (the leader confirms
   * its commit index with a quorum) and reports `confirmed(askedAt)`; a worker asks the voters
   * for a fresh sync of the documents (its proof is a sync that finishes later).
   */
  confirm: boolean;
  /** When this check was made (what a voter's round reports as asked at). */
  at: number;
}

/** A worker back in touch asks for a sync at most this often. */
export const WORKER_CONFIRM_GAP_MS = 2_000;

export class Fence {
  /**
   * When this node last lost touch, or started: it starts nothing until it has proof that its
   * view is current as of after that moment. A voter: a ReadIndex round that completed later,
   * with everything up to that index applied here. A worker: a sync of the cluster document that
   * finished later.
   */
  private outOfTouchAt: number;
  private lastCheckAt: number;
  private confirmedAt = 0;
  private confirming = false;
  private lastAskAt = -Infinity;
  private lastState = '';

  constructor(private readonly o: FenceOptions) {
    this.outOfTouchAt = o.startedAt;
    this.lastCheckAt = o.startedAt;
  }

  check(f: FenceFacts): GateCheck {
    const { nodeTimeoutMs, fenceAfterMs } = this.o;
    const now = this.o.now();
    // A stalled event loop is time out of touch too, whatever the last message said.
    if (now - this.lastCheckAt > nodeTimeoutMs) this.outOfTouchAt = now;
    this.lastCheckAt = now;
    if (!f.inCluster) return { fenced: false, mayStart: false, why: 'not in a cluster yet', confirm: false, at: now };
    const since = now - Math.max(f.lastContact, this.o.startedAt);
    const fenced = since > fenceAfterMs;
    if (since > nodeTimeoutMs) this.outOfTouchAt = now;
    let caughtUp: boolean;
    let confirm = false;
    if (this.o.role === 'voter') {
      caughtUp = f.leaderKnown && this.confirmedAt > this.outOfTouchAt;
      if (!caughtUp && !fenced && !this.confirming && f.leaderKnown && f.canConfirm) {
        this.confirming = true;
        confirm = true;
      }
    } else {
      caughtUp = since < nodeTimeoutMs && f.syncedAt > this.outOfTouchAt;
      if (!fenced && !caughtUp && f.canConfirm && now - this.lastAskAt > WORKER_CONFIRM_GAP_MS) {
        this.lastAskAt = now;
        confirm = true;
      }
    }
    const why = fenced ? `no contact for ${Math.round(since / 1000)} s` : caughtUp ? undefined : 'catching up';
    return { fenced, mayStart: !fenced && caughtUp, ...(why ? { why } : {}), confirm, at: now };
  }

  /** A voter's confirmation round asked at `askedAt` succeeded. */
  confirmed(askedAt: number): void {
    this.confirming = false;
    this.confirmedAt = Math.max(this.confirmedAt, askedAt);
  }

  /** A voter's confirmation round failed (no leader answered): the next check may ask again. */
  confirmFailed(): void {
    this.confirming = false;
  }

  /** Whether the gate changed since the last call: a change is logged, and the VMs looked at again. */
  changed(g: Gate): { changed: boolean; backInTouch: boolean } {
    const key = `${g.fenced}/${g.mayStart}`;
    if (key === this.lastState) return { changed: false, backInTouch: false };
    const backInTouch = !g.fenced && this.lastState.startsWith('true');
    this.lastState = key;
    return { changed: true, backInTouch };
  }
}

/**
 * The dead man's switch of this node's VMs (vm/supervise.ts): the seconds each VM's shim waits for
 * a fresh fence file before it stops its VM, should the daemon die. A cluster of one node has
 * nowhere else to run them: there (0) they simply keep running until the daemon is back.
 */
export function deadMansSwitchSeconds(o: { otherNodes: boolean; fenceAfterMs: number }): number {
  return o.otherNodes ? Math.max(1, Math.ceil(o.fenceAfterMs / 1000)) : 0;
}
