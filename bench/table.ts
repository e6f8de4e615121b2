// Benchmarks print one table: what was measured, the number, and the target it is held to.

export interface Row {
  name: string;
  value: number;
  unit: string;
  target: string;
}

/** The p-th percentile (0-100) of some numbers. */
export function pct(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

export function printTable(title: string, rows: Row[]): void {
  const cells = rows.map((r) => [r.name, `${r.value < 10 ? r.value.toFixed(2) : Math.round(r.value)} ${r.unit}`, r.target]);
  const head = ['benchmark', 'result', 'target'];
  const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => `| ${c.map((x, i) => x.padEnd(w[i]!)).join(' | ')} |`;
  process.stdout.write(`\n${title}\n${line(head)}\n|${w.map((n) => '-'.repeat(n + 2)).join('|')}|\n${cells.map(line).join('\n')}\n`);
}
