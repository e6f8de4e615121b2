// Errors are values with a place (DESIGN.md): every problem in a manifest set names the file, the
// line and column, the resource, the field path and what was expected. A set is checked whole and
// all its problems are reported together; nothing is applied while any error stands.

export type Severity = 'error' | 'warning';

export interface ManifestError {
  file: string;
  line: number; // 1-based
  col: number; // 1-based
  ref?: string; // Kind/name
  path?: string; // spec.ports[0].host
  message: string;
  severity: Severity;
}

export function formatError(e: ManifestError): string {
  // Line 0 means the problem is with the whole file (missing, too big), not a place in it.
  const where = e.line > 0 ? `${e.file}:${e.line}:${e.col}` : e.file;
  const what = [e.ref, e.path].filter(Boolean).join(' ');
  const prefix = e.severity === 'warning' ? 'warning: ' : '';
  return what ? `${where} ${what}: ${prefix}${e.message}` : `${where} ${prefix}${e.message}`;
}

/** Orders errors the way a reader scans files: by file, then position. */
export function sortErrors(errors: ManifestError[]): ManifestError[] {
  return [...errors].sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line || a.col - b.col));
}

/** Thrown when a set has errors; carries all of them. Maps to exit code 2. */
export class ManifestSetError extends Error {
  readonly errors: ManifestError[];
  constructor(errors: ManifestError[]) {
    const list = sortErrors(errors);
    super(list.map(formatError).join('\n'));
    this.name = 'ManifestSetError';
    this.errors = list;
  }
}

/** Formats a path of keys and indices as users write it: spec.ports[0].host */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else {
      const s = String(seg);
      if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(s)) out += out ? `.${s}` : s;
      else out += `[${JSON.stringify(s)}]`;
    }
  }
  return out;
}

/** Renders a value the way it appeared, for "got ..." in messages. */
export function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  // JSON has no word for these; YAML's is what the user wrote.
  if (typeof v === 'number' && !Number.isFinite(v)) return Number.isNaN(v) ? '.nan' : v > 0 ? '.inf' : '-.inf';
  const s = JSON.stringify(v);
  // Cut long values, but say how long they were: the length may be the problem.
  return s.length > 60 ? `${s.slice(0, 57)}..." (${String(v).length} characters)` : s;
}
