import { readFile } from 'node:fs/promises';
import { every, type Runnable } from '../lifecycle/index.js';

// A daemon whose data dir vanished (deleted under it) has no durable state left to stand on: it
// says so and stops, rather than acknowledge writes into deleted files.

export function dataDirWatchdog(o: { lockFile: string; pid: number; lost: (why: string) => void }): Runnable {
  let gone = false;
  const lost = (why: string) => {
    if (gone) return;
    gone = true;
    o.lost(why);
  };
  return every('data-dir-watchdog', 5_000, () =>
    readFile(o.lockFile, 'utf8').then(
      (pid) => {
        if (Number(pid.trim()) !== o.pid) lost('its lock file now belongs to another process');
      },
      () => lost('its data dir or lock file is gone'),
    ),
  );
}
