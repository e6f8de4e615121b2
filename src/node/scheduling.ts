import type { Logger } from 'pino';
import type { Runnable } from '../lifecycle/index.js';
import { placementCommand, type Command, type CommandOutcome, type DesiredStateStore, type NodeView } from '../state/index.js';

// The leader's scheduling pass, run after every change and on an interval (node readiness changes
// with time, not with entries). The decision is pure (state/placement.ts); this only triggers it,
// proposes the answer, and makes sure two passes never run at once. A leader-only part: it runs
// while this node leads.

/** How often the leader schedules without being asked. */
export const SCHEDULE_EVERY_MS = 2_000;

export class SchedulingLoop implements Runnable {
  readonly name = 'scheduler';
  private running = false;
  private again = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: DesiredStateStore,
    private readonly view: NodeView,
    private readonly propose: (cmd: Command) => Promise<CommandOutcome>,
    private readonly isLeader: () => boolean,
    private readonly log: Pick<Logger, 'warn' | 'debug'>,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.kick(), SCHEDULE_EVERY_MS);
    this.timer.unref();
    this.kick();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Asks for a pass (while started); passes asked for while one runs fold into one more. */
  kick(): void {
    if (!this.timer) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.run().finally(() => {
      this.running = false;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
  }

  private async run(): Promise<void> {
    // A pass proposes at most a few entries: each one is the full answer for the state it saw.
    for (let i = 0; i < 3 && this.isLeader(); i++) {
      const cmd = placementCommand(this.store, this.view, new Date().toISOString());
      if (!cmd) return;
      try {
        await this.propose(cmd);
        if (cmd.op === 'place') this.log.debug({ place: cmd.place.length, evict: cmd.evict.length, unschedulable: cmd.unschedulable.length }, 'placements committed');
      } catch (err) {
        this.log.warn({ err }, 'could not commit placements; will retry');
        return;
      }
    }
  }
}
