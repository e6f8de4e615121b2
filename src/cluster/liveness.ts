import type { NodeView } from '../state/index.js';

// Liveness as this node sees the others (SPEC section 4), from the heartbeats in the status
// document: a node is NotReady once its heartbeat is older than --node-timeout, and lost (its VMs
// may run elsewhere) only after --node-timeout plus --fence-after, counted from when this node
// became leader at the earliest: a new leader first gives every node a chance to heartbeat to it,
// whatever old heartbeats in the document say. Pure: time comes from the injected clock.

export interface LivenessOptions {
  self: string;
  nodeTimeoutMs: number;
  fenceAfterMs: number;
  now: () => number;
  /** The heartbeats as the status document holds them now; read before every answer. */
  heartbeats?: () => Iterable<Heartbeat>;
}

export interface Heartbeat {
  nodeId: string;
  /** The time the node wrote into its heartbeat (its own clock). */
  time: string;
}

export class Liveness {
  /**
   * When this node saw each heartbeat change, by its own clock: liveness must not rest on another
   * machine's clock (a node whose clock runs ahead would look alive for longer). A heartbeat seen
   * for the first time counts from the time it carries, at most now.
   */
  private readonly beats = new Map<string, { time: string; at: number }>();
  private leaderSince = 0;

  constructor(private readonly o: LivenessOptions) {}

  /** Takes in the heartbeats as the status document holds them now. */
  observe(beats: Iterable<Heartbeat>): void {
    const now = this.o.now();
    for (const { nodeId, time } of beats) {
      if (typeof time !== 'string') continue;
      const prev = this.beats.get(nodeId);
      if (!prev) this.beats.set(nodeId, { time, at: Math.min(now, Date.parse(time) || 0) });
      else if (prev.time !== time) this.beats.set(nodeId, { time, at: now });
    }
  }

  /** Reads the heartbeats anew (also on an interval, so that a change is timed when it is seen). */
  refresh(): void {
    if (this.o.heartbeats) this.observe(this.o.heartbeats());
  }

  /** This node became the leader (true) or is no longer it. */
  leading(leader: boolean): void {
    this.leaderSince = leader ? this.o.now() : 0;
  }

  /**
   * Up: this node always; another while its heartbeat is fresh. A node that never heartbeat (no
   * documents yet) is up while it answers pings (`connected`).
   */
  ready(nodeId: string, connected = false): boolean {
    if (nodeId === this.o.self) return true;
    this.refresh();
    const b = this.beats.get(nodeId);
    if (b) return this.o.now() - b.at < this.o.nodeTimeoutMs;
    return connected;
  }

  /** Silent for --node-timeout plus --fence-after (since this node leads): it has fenced itself. */
  lost(nodeId: string): boolean {
    if (nodeId === this.o.self) return false;
    this.refresh();
    const b = this.beats.get(nodeId);
    if (!b) return false;
    return this.o.now() - Math.max(b.at, this.leaderSince) > this.o.nodeTimeoutMs + this.o.fenceAfterMs;
  }
}

/** What the scheduler asks of liveness (state/placement.ts). */
export function schedulingView(l: Liveness, connected: (nodeId: string) => boolean, vmGone: (nodeId: string, vm: string) => boolean): NodeView {
  return { schedulable: (id) => l.ready(id, connected(id)), lost: (id) => l.lost(id), vmGone };
}
