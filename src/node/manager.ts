import type { Runnable } from '../lifecycle/index.js';

// Starts a node's parts in order and stops them in reverse (controller-runtime's Manager). Parts
// marked leader-only run only while this node leads: they start when it becomes the leader and
// stop when it no longer is. One step that never finishes (a peer that does not answer a close)
// must not keep the node from stopping: past its deadline it is logged and the rest goes on.

export interface ManagerLog {
  warn(o: object, msg?: string): void;
}

export interface ManagerOptions {
  log: ManagerLog;
  /** How long one step of stopping may take before the next goes ahead anyway. */
  stepDeadlineMs?: number;
}

interface Part {
  r: Runnable;
  leaderOnly: boolean;
  running: boolean;
}

export const STOP_STEP_DEADLINE_MS = 10_000;

export class Manager {
  private readonly parts: Part[] = [];
  private state: 'building' | 'running' | 'stopping' = 'building';
  private leader = false;
  /** Leadership changes, one at a time: a start of the leader-only parts finishes before their stop. */
  private leadership: Promise<void> = Promise.resolve();

  constructor(private readonly o: ManagerOptions) {}

  /** Set first thing on the way down: parts still running must not start new work on what is closed. */
  get stopping(): boolean {
    return this.state === 'stopping';
  }

  /** A part started by `start()`, in the order added. */
  add(r: Runnable, opts: { leaderOnly?: boolean } = {}): void {
    this.parts.push({ r, leaderOnly: !!opts.leaderOnly, running: false });
  }

  /** A part already running (opened while the node was built): it is only stopped, in its place. */
  adopt(name: string, stop: () => void | Promise<void>): void {
    this.parts.push({ r: { name, start() {}, stop }, leaderOnly: false, running: true });
  }

  /** Starts every part not yet running, in order; then the leader-only ones if this node leads. */
  async start(): Promise<void> {
    for (const p of this.parts) {
      if (this.stopping) return;
      if (p.running || p.leaderOnly) continue;
      await p.r.start();
      p.running = true;
    }
    this.state = 'running';
    void this.setLeader(this.leader);
  }

  /** This node became the leader, or stopped being it (leader-only parts follow once running). */
  setLeader(leader: boolean): Promise<void> {
    this.leader = leader;
    this.leadership = this.leadership.then(async () => {
      if (this.state !== 'running') return;
      const want = this.leader;
      const parts = this.parts.filter((p) => p.leaderOnly && p.running !== want);
      for (const p of want ? parts : parts.reverse()) {
        if (this.state !== 'running' || this.leader !== want) return;
        try {
          if (want) await p.r.start();
          else await p.r.stop();
          p.running = want;
          // The node began to stop while this part started: stop() has passed it already.
          if (want && this.stopping) {
            p.running = false;
            await p.r.stop();
          }
        } catch (e) {
          this.o.log.warn({ part: p.r.name, err: (e as Error)?.message ?? String(e) }, `could not ${want ? 'start' : 'stop'} a leader part`);
        }
      }
    });
    return this.leadership;
  }

  /** Stops every running part in reverse order, each within the step deadline. */
  async stop(): Promise<void> {
    if (this.state === 'stopping') return;
    this.state = 'stopping';
    const deadline = this.o.stepDeadlineMs ?? STOP_STEP_DEADLINE_MS;
    for (const p of [...this.parts].reverse()) {
      if (!p.running) continue;
      p.running = false;
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), deadline)));
      const done = Promise.resolve()
        .then(() => p.r.stop())
        .then(
          () => 'done' as const,
          (e: unknown) => void this.o.log.warn({ part: p.r.name, err: (e as Error)?.message ?? String(e) }, 'stopping a part failed'),
        );
      if ((await Promise.race([done, late])) === 'late') this.o.log.warn({ part: p.r.name }, `stopping ${p.r.name} did not finish within ${deadline / 1000} s; going on`);
      clearTimeout(timer);
    }
  }

  /** The parts as they stand, for tests and debugging. */
  list(): { name: string; leaderOnly: boolean; running: boolean }[] {
    return this.parts.map((p) => ({ name: p.r.name, leaderOnly: p.leaderOnly, running: p.running }));
  }
}
