import { inspect } from 'node:util';

// Polling, for tests that wait on what they cannot be told about: a daemon's state, a file, a
// child's output, an in-process event.

/**
 * Calls `fn` until it returns a truthy value, and resolves with that value. An error thrown by
 * `fn` counts as "not yet" (a daemon refuses calls while it starts; a list lacks the item for
 * now). After `timeoutMs` it throws an Error naming `what`, the timeout, and the last value `fn`
 * returned or the error it last threw. `intervalMs` 0 asks again on the next turn of the event
 * loop (setImmediate), for conditions that in-process callbacks of the same kind make true.
 */
export async function until<T>(
  what: string,
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 10_000,
  intervalMs = 100,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    let last: string;
    try {
      const v = await fn();
      if (v) return v;
      last = `last value: ${inspect(v)}`;
    } catch (err) {
      last = `last error: ${err instanceof Error ? String(err) : inspect(err)}`;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (${last})`);
    await new Promise((r) => (intervalMs > 0 ? setTimeout(r, intervalMs) : setImmediate(r)));
  }
}
