import type { ApiClient, ResourceJson, VmStatus } from '../api/index.js';
import type { VmSpec } from '../state/index.js';
import { ExitStatus } from './output.js';
import { statusLine } from './progress.js';

// `--wait` (SPEC section 3): every VM of the set has observed its latest generation and reached
// its spec.state. A Failed or unschedulable VM, or the timeout, ends the wait with exit 1.

export function vmSettled(r: ResourceJson): 'done' | 'waiting' | string {
  const st = r.status as VmStatus;
  const want = (r.spec as VmSpec).state ?? 'Running';
  if (st.phase === 'Failed') return `VirtualMachine/${r.metadata.name} Failed: ${st.message}`;
  const sched = st.conditions.find((c) => c.type === 'Scheduled');
  if (sched?.status === 'False' && sched.reason === 'Unschedulable') {
    return `VirtualMachine/${r.metadata.name} cannot be scheduled: ${sched.message}`;
  }
  return st.observedGeneration === r.metadata.generation && st.phase === want ? 'done' : 'waiting';
}

export async function waitForVms(client: ApiClient, names: string[], timeoutMs: number): Promise<void> {
  if (names.length === 0) return;
  const line = statusLine();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const byName = new Map((await client.list('VirtualMachine')).map((r) => [r.metadata.name, r]));
    let done = 0;
    for (const n of names) {
      const r = byName.get(n);
      if (!r) throw new ExitStatus(1, `error: VirtualMachine/${n} no longer exists`);
      const s = vmSettled(r);
      if (s === 'done') done++;
      else if (s !== 'waiting') {
        line.done();
        throw new ExitStatus(1, `error: ${s}`);
      }
    }
    line.set(`waiting for VMs: ${done}/${names.length} reached their state`);
    if (done === names.length) {
      line.done(`${done}/${names.length} VMs reached their state`);
      return;
    }
    if (Date.now() > deadline) {
      line.done();
      throw new ExitStatus(1, `error: timed out after ${Math.round(timeoutMs / 1000)}s with ${done}/${names.length} VMs in their state`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
