// The errors a command throws to choose its exit code (main.ts maps them). Apart from output.ts,
// which re-exports them, so that main.ts, loaded by every command and by --help, stays small.

/** Bad flags or arguments: exit 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A command that ran fine but whose answer is "no" (differences found, not found): exit with `code`. */
export class ExitStatus extends Error {
  constructor(readonly code: number, message = '') {
    super(message);
    this.name = 'ExitStatus';
  }
}
