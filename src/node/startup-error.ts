import { EXIT_CODE, type ErrorCode } from '../api/index.js';

/** A node that cannot start, and the exit code of SPEC section 3 that says why. */
export class StartupError extends Error {
  readonly exitCode: number;
  constructor(
    message: string,
    readonly code: ErrorCode = 'internal',
  ) {
    super(message);
    this.name = 'StartupError';
    this.exitCode = EXIT_CODE[code];
  }
}
