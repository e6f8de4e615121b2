import { formatBytes } from '../state/index.js';

// Progress of long operations: a bar on a TTY (stderr, so stdout stays machine-readable), and
// nothing at all otherwise.

export interface Progress {
  update(done: number): void;
  stop(): void;
}

/** Loaded only for a TTY: a pipe gets no bar, and no start-up cost for one. */
export async function transferBar(label: string, total: number): Promise<Progress> {
  if (!process.stderr.isTTY) return { update() {}, stop() {} };
  const { default: cliProgress } = await import('cli-progress');
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${label} [{bar}] {percentage}% {doneText}/{totalText}`,
      hideCursor: true,
      clearOnComplete: false,
      fps: 10,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { doneText: formatBytes(0), totalText: formatBytes(total) });
  return {
    update: (done) => bar.update(done, { doneText: formatBytes(done) }),
    stop: () => bar.stop(),
  };
}

/** A one-line status that rewrites itself on a TTY; on a pipe, only changes are printed, once. */
export function statusLine(): { set(text: string): void; done(text?: string): void } {
  const tty = !!process.stderr.isTTY;
  let last = '';
  return {
    set(text) {
      if (text === last) return;
      last = text;
      if (tty) process.stderr.write(`\r\x1b[2K${text}`);
    },
    done(text) {
      if (tty) process.stderr.write(`\r\x1b[2K${text ?? last}\n`);
      else if (text) process.stderr.write(text + '\n');
    },
  };
}
