import type { Command } from 'commander';
import type { ApiClient, VmStatus } from '../api/index.js';
import { parseDuration } from '../state/index.js';
import { connect } from './connection.js';
import { ExitStatus } from './output.js';
import { statusLine } from './progress.js';

// `blixard node cordon|uncordon|drain NAME` (kubectl's): no new VMs on the node; drain also moves
// the VMs it runs elsewhere (each starts elsewhere only after this node stopped it).

export default async function nodeCordon(action: 'cordon' | 'uncordon' | 'drain', name: string, opts: { wait?: boolean; timeout?: string }, cmd: Command): Promise<void> {
  const client = await connect(cmd.optsWithGlobals());
  try {
    const r = await client.cordon(name, { cordoned: action !== 'uncordon', ...(action === 'drain' ? { drain: true } : {}) });
    process.stdout.write(`node/${name} ${action === 'uncordon' ? 'uncordoned' : action === 'cordon' ? 'cordoned' : `drained (${r.evicting} VMs moving)`}\n`);
    if (action === 'drain' && opts.wait) await waitEmpty(client, r.nodeId, opts.timeout ?? '120s');
  } finally {
    client.close();
  }
}

/** Waits until no VM is placed on the node any more, with progress on a TTY. */
async function waitEmpty(client: ApiClient, nodeId: string, timeout: string): Promise<void> {
  const line = statusLine();
  const deadline = Date.now() + parseDuration(timeout);
  for (;;) {
    const left = (await client.list('VirtualMachine')).filter((v) => (v.status as VmStatus).nodeId === nodeId).length;
    line.set(`draining: ${left} VMs still on the node`);
    if (left === 0) return line.done('drained: no VM left on the node');
    if (Date.now() > deadline) {
      line.done();
      throw new ExitStatus(1, `error: ${left} VMs still on the node after ${timeout}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
