import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { every, type Runnable } from '../lifecycle/index.js';
import { writeFileAtomic } from '../storage/index.js';

// The dead man's switch of this node's VMs (vm/supervise.ts): a file refreshed every second with
// the seconds each VM's shim waits without a refresh before it stops its VM (should this daemon
// die and stay dead). The seconds are the cluster's rule (cluster/fencing.ts).

export function deadMansSwitch(o: { file: string; seconds: () => number; onError: (err: unknown) => void }): Runnable {
  const write = async () => {
    await mkdir(path.dirname(o.file), { recursive: true });
    await writeFileAtomic(o.file, `${o.seconds()}\n`);
  };
  const refresh = every('dead-mans-switch', 1000, write, { onError: o.onError });
  return {
    name: 'dead-mans-switch',
    // The first write must land: VMs are started only with the switch armed.
    start: async () => {
      await write();
      await refresh.start();
    },
    stop: () => refresh.stop(),
  };
}
