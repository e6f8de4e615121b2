// One error type crosses the API: an HTTP status, a stable code, a message a person can act on,
// and details for scripts. The CLI maps it to the exit codes of SPEC section 3.

export type ErrorCode =
  | 'invalid' // bad input: manifests, flags, --max-prune exceeded (exit 2)
  | 'too-large' // request over the size limit (exit 2)
  | 'unauthorized' // missing or wrong token (exit 5)
  | 'not-found' // no such resource (exit 1)
  | 'conflict' // what the plan read has changed (exit 4)
  | 'no-leader' // the cluster cannot take writes now (exit 3)
  | 'unreachable' // no answer from the server (exit 3)
  | 'internal'; // a bug or an I/O failure on the server (exit 1)

const STATUS: Record<ErrorCode, number> = {
  invalid: 400,
  'too-large': 413,
  unauthorized: 401,
  'not-found': 404,
  conflict: 409,
  'no-leader': 503,
  unreachable: 503,
  internal: 500,
};

export const EXIT_CODE: Record<ErrorCode, number> = {
  invalid: 2,
  'too-large': 2,
  unauthorized: 5,
  'not-found': 1,
  conflict: 4,
  'no-leader': 3,
  unreachable: 3,
  internal: 1,
};

export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly details: unknown;
  constructor(code: ErrorCode, message: string, details?: unknown) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.details = details;
  }
  get status(): number {
    return STATUS[this.code];
  }
  get exitCode(): number {
    return EXIT_CODE[this.code];
  }
  toJSON(): { error: { code: ErrorCode; message: string; details?: unknown } } {
    return { error: { code: this.code, message: this.message, ...(this.details !== undefined ? { details: this.details } : {}) } };
  }
}

export function codeForStatus(status: number): ErrorCode {
  for (const [code, s] of Object.entries(STATUS)) if (s === status) return code as ErrorCode;
  return status >= 500 ? 'internal' : 'invalid';
}
