import type { DesiredVm, ObservedVm, VmAction } from './vm-plan.js';
import { describeExit } from './vm-plan.js';

// What a node reports for a VM placed on it (SPEC section 5): a phase, conditions and a message,
// from what it observes and what it is doing. Pure; the caller stamps transition times.

export type Phase = 'Pending' | 'Pulling' | 'Starting' | 'Running' | 'Stopping' | 'Stopped' | 'Failed' | 'Unknown';

export interface ConditionState {
  type: 'Scheduled' | 'ImageReady' | 'Running';
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

export interface NodeVmContext {
  observed: ObservedVm | undefined;
  /** The action being carried out now, if any. */
  acting?: VmAction['kind'];
  pull?: { bytes: number; total: number | null };
  /** Whether the image (and initrd) content was in the local store at the last look. */
  imagePresent?: boolean;
  /** The readyPattern has matched since the VM last started (or the Image has none). */
  ready: boolean;
  /** The last action failed with this, and how many failures in a row. */
  error?: { message: string; count: number };
}

/** After this many failures in a row a VM shows Failed (the node keeps retrying with backoff). */
export const FAILED_AFTER = 5;

export interface VmReport {
  phase: Phase;
  observedGeneration: number;
  message: string;
  conditions: ConditionState[];
}

export function reportVm(d: DesiredVm, nodeName: string, c: NodeVmContext): VmReport {
  const want = d.spec.state ?? 'Running';
  const o = c.observed;
  const exists = !!o && o.state !== 'missing';
  const scheduled: ConditionState = { type: 'Scheduled', status: 'True', reason: 'Placed', message: `placed on ${nodeName}` };
  const imageReady: ConditionState = c.pull
    ? { type: 'ImageReady', status: 'False', reason: 'Pulling', message: `fetching Image/${d.image.name}: ${progress(c.pull)}` }
    : c.acting === 'pull' || d.image.hash === null
      ? { type: 'ImageReady', status: 'False', reason: 'Pulling', message: `fetching Image/${d.image.name}` }
      : c.imagePresent === false
        ? { type: 'ImageReady', status: 'False', reason: 'NotPresent', message: `${d.image.hash} is not in the local store yet` }
        : { type: 'ImageReady', status: 'True', reason: 'Present', message: `${d.image.hash} is in the local store` };
  const running = (status: ConditionState['status'], reason: string, message: string): ConditionState => ({ type: 'Running', status, reason, message });
  const observedGeneration = o?.launched?.generation ?? (want === 'Stopped' && !exists ? d.generation : 0);
  // A failure not yet counted as Failed still shows, so that a VM waiting on retries says why.
  const retrying = c.error ? `; last attempt failed (${c.error.count}x): ${c.error.message}; retrying` : '';
  const report = (phase: Phase, message: string, run: ConditionState): VmReport => ({
    phase,
    observedGeneration,
    message: phase === 'Running' || phase === 'Stopped' ? message : message + retrying,
    conditions: [scheduled, imageReady, run],
  });

  if (c.error && c.error.count >= FAILED_AFTER) return { ...report('Failed', '', running('False', 'Failing', c.error.message)), message: `${c.error.message} (${c.error.count} failures in a row; retrying with backoff)` };
  if (imageReady.status === 'False') return report('Pulling', imageReady.message, running('False', 'WaitingForImage', 'the image is not here yet'));
  if (c.acting === 'stop' || c.acting === 'delete') return report('Stopping', 'stopping', running('False', 'Stopping', 'stopping'));
  if (c.acting === 'create' || c.acting === 'start' || c.acting === 'restart' || c.acting === 'recreate') {
    return report('Starting', `${c.acting === 'restart' || c.acting === 'recreate' ? `${c.acting}ing` : 'starting'}`, running('False', 'Starting', 'starting'));
  }
  if (!o || o.state === 'unknown') return report('Unknown', 'the driver cannot tell the state yet', running('Unknown', 'Unknown', 'no observation yet'));
  if (o.state === 'running') {
    if (c.ready) return report('Running', 'running', running('True', 'Ready', d.image.readyPattern ? `console printed /${d.image.readyPattern}/` : 'the driver reports it running'));
    return report('Starting', `running; waiting for the console to print /${d.image.readyPattern}/`, running('False', 'WaitingForReadyPattern', `waiting for /${d.image.readyPattern}/`));
  }
  if (want === 'Stopped') return report('Stopped', 'stopped, as desired', running('False', 'Stopped', 'stopped, as desired'));
  if (o.state === 'exited') {
    const failed = o.exit ? o.exit.code !== 0 || o.exit.signal !== null : true;
    const policy = d.spec.restartPolicy ?? 'Always';
    const restarts = policy === 'Always' || (policy === 'OnFailure' && failed);
    if (!restarts) return report(failed ? 'Failed' : 'Stopped', `exited (${describeExit(o.exit)}); restartPolicy ${policy}`, running('False', failed ? 'Failed' : 'Completed', describeExit(o.exit)));
    return report('Starting', `exited (${describeExit(o.exit)}); restarting`, running('False', 'Restarting', describeExit(o.exit)));
  }
  return report('Pending', o.state === 'missing' ? 'not created yet' : 'stopped; starting', running('False', 'NotStarted', 'not started yet'));
}

function progress(p: { bytes: number; total: number | null }): string {
  const mib = (n: number) => `${(n / (1024 * 1024)).toFixed(1)} MiB`;
  return p.total ? `${mib(p.bytes)} of ${mib(p.total)} (${Math.floor((100 * p.bytes) / p.total)}%)` : mib(p.bytes);
}
