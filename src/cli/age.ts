import { formatDuration } from '../state/index.js';

// Apart from output.ts, which every command loads: only the commands that print ages load state/
// for it.

/** How long ago `iso` was, as kubectl's AGE column prints it. */
export function age(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '<none>';
  return formatDuration(Math.max(0, now - Date.parse(iso)));
}
