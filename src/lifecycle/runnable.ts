// What a node is made of, as the manager sees it (controller-runtime's Runnable, etcd's named
// goroutines): a part with a name, started once and stopped once.

export interface Runnable {
  readonly name: string;
  start(): void | Promise<void>;
  stop(): void | Promise<void>;
}

export interface EveryOptions {
  /** Where a run's error goes (an error is never swallowed). */
  onError?: (err: unknown) => void;
  /** Also run once as soon as the runnable starts; 'await': start() waits for that run. */
  atStart?: boolean | 'await';
}

/**
 * A task run every `ms` while started: one timer that never keeps the process alive, cleared on
 * stop. A run that is still going when the next is due is not waited for (as setInterval does);
 * a task that must not overlap itself guards that itself.
 */
export function every(name: string, ms: number, task: () => void | Promise<void>, opts: EveryOptions = {}): Runnable {
  let timer: NodeJS.Timeout | undefined;
  const run = (): Promise<void> | undefined => {
    try {
      const p = task();
      if (p) return p.catch((e: unknown) => opts.onError?.(e));
    } catch (e) {
      opts.onError?.(e);
    }
    return undefined;
  };
  return {
    name,
    async start() {
      if (timer) return;
      timer = setInterval(run, ms);
      timer.unref();
      if (opts.atStart === 'await') await run();
      else if (opts.atStart) void run();
    },
    stop() {
      clearInterval(timer);
      timer = undefined;
    },
  };
}
