// A small YAML emitter for the data `diff` shows (maps, lists, strings, numbers, booleans). The
// yaml library's stringify costs ~80 µs per resource, which alone would spend most of the 3 s a
// diff of 10,000 resources may take. Strings that could read as anything but themselves are
// double-quoted JSON, which is valid YAML, so the output always parses back to the same data.

const PLAIN = /^[A-Za-z_./][A-Za-z0-9_ ./=+-]*$/;
const AMBIGUOUS = /^(true|false|yes|no|on|off|null|~|y|n)$/i;

function scalar(v: unknown): string {
  if (typeof v === 'string') return PLAIN.test(v) && !AMBIGUOUS.test(v) && !v.endsWith(' ') ? v : JSON.stringify(v);
  if (v === null || v === undefined) return 'null';
  return String(v);
}

function isEmpty(v: unknown): boolean {
  return Array.isArray(v) ? v.length === 0 : typeof v === 'object' && v !== null && Object.keys(v).length === 0;
}

function emit(v: unknown, indent: string, out: string[]): void {
  if (Array.isArray(v)) {
    for (const item of v) {
      if (typeof item === 'object' && item !== null && !isEmpty(item)) {
        const lines: string[] = [];
        emit(item, indent + '  ', lines);
        out.push(indent + '- ' + lines[0]!.slice(indent.length + 2), ...lines.slice(1));
      } else out.push(`${indent}- ${isEmpty(item) ? (Array.isArray(item) ? '[]' : '{}') : scalar(item)}`);
    }
    return;
  }
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    const key = scalar(k);
    if (typeof val === 'object' && val !== null && !isEmpty(val)) {
      out.push(`${indent}${key}:`);
      emit(val, indent + '  ', out);
    } else out.push(`${indent}${key}: ${isEmpty(val) ? (Array.isArray(val) ? '[]' : '{}') : scalar(val)}`);
  }
}

export function plainYaml(v: Record<string, unknown>): string {
  const out: string[] = [];
  emit(v, '', out);
  return out.join('\n') + '\n';
}
