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
  const want = new Set(names);
  const latest = new Map<string, ResourceJson>();
  const stop = new AbortController();
  let synced = false;
  let outcome: { ok: true } | { error: string } | null = null;
  const end = (o: { ok: true } | { error: string }) => {
    outcome ??= o;
    stop.abort();
  };
  // Every change as it happens (a watch), not a list every half second: the wait ends when the
  // last VM gets there. A VM the server's view does not hold yet (a follower a commit behind)
  // is waited for; one that goes away after it was seen ends the wait.
  const check = () => {
    let done = 0;
    for (const n of names) {
      const r = latest.get(n);
      if (!r) continue;
      const s = vmSettled(r);
      if (s === 'done') done++;
      else if (s !== 'waiting') return end({ error: s });
    }
    line.set(`waiting for VMs: ${done}/${names.length} reached their state`);
    if (done === names.length) end({ ok: true });
  };
  const timer = setTimeout(() => end({ error: `timed out after ${Math.round(timeoutMs / 1000)}s` }), timeoutMs);
  try {
    await client.watch('VirtualMachine', { signal: stop.signal }, (e) => {
      if (e.type === 'SYNCED') synced = true;
      else if (want.has(e.object.metadata.name)) {
        if (e.type === 'DELETED') return end({ error: `VirtualMachine/${e.object.metadata.name} no longer exists` });
        latest.set(e.object.metadata.name, e.object);
      }
      if (synced) check();
    });
  } finally {
    clearTimeout(timer);
  }
  const result = outcome ?? { error: 'the server closed the watch' };
  const done = names.filter((n) => latest.has(n) && vmSettled(latest.get(n)!) === 'done').length;
  if ('ok' in result) {
    line.done(`${done}/${names.length} VMs reached their state`);
    return;
  }
  line.done();
  throw new ExitStatus(1, result.error.startsWith('timed out') ? `error: ${result.error} with ${done}/${names.length} VMs in their state` : `error: ${result.error}`);
}
