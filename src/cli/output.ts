import { createRequire } from 'node:module';
import { UsageError } from './exit.js';

export { ExitStatus, UsageError } from './exit.js';

// How the CLI prints: colour only on a TTY and never with NO_COLOR; tables like kubectl's.

export interface Out {
  color: boolean;
  tty: boolean;
  write(s: string): void;
  err(s: string): void;
}

export function terminal(): Out {
  const tty = !!process.stdout.isTTY;
  return {
    tty,
    color: tty && !('NO_COLOR' in process.env) && process.env.TERM !== 'dumb',
    write: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
  };
}

const CODES = { red: 31, green: 32, yellow: 33, cyan: 36, bold: 1, dim: 2 } as const;
export type Style = keyof typeof CODES;

export function paint(out: Out, style: Style, s: string): string {
  return out.color ? `\x1b[${CODES[style]}m${s}\x1b[0m` : s;
}

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('   ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

// yaml is loaded when something is printed as YAML: every command pays Node's module loading
// for what it imports, and most never print YAML. (CommonJS: loads faster than its ESM build.)
const require = createRequire(import.meta.url);

export function toYaml(v: unknown): string {
  const { stringify } = require('yaml') as typeof import('yaml');
  return stringify(v, { lineWidth: 0 });
}

export function toJson(v: unknown): string {
  return JSON.stringify(v, null, 2) + '\n';
}

export type OutputFormat = 'json' | 'yaml' | 'name' | 'wide' | 'table';

export function outputFormat(o: string | undefined, allowed: OutputFormat[]): OutputFormat {
  const f = (o ?? 'table') as OutputFormat;
  if (!allowed.includes(f)) throw new UsageError(`-o: expected one of ${allowed.filter((a) => a !== 'table').join(', ')}, got ${JSON.stringify(o)}`);
  return f;
}
