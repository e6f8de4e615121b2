import { changeEffects, comparable, maxEffect, type Effect, type ImageFormat, type VmSpec } from '../state/index.js';

// The node reconciler's decision for one VM: desired (what the cluster placed here) and observed
// (what the driver sees, and what this node launched) -> the one next action. Pure and
// level-triggered: it never needs to know which event woke it (controller-runtime's reconcile).

export interface DesiredImage {
  name: string;
  format: ImageFormat;
  hash: string | null; // content of the image file (null: not known yet, e.g. a ticket not fetched)
  initrdHash?: string;
  readyPattern?: string;
}

export interface DesiredVm {
  name: string;
  uid: string;
  generation: number;
  /** With defaults applied. */
  spec: VmSpec;
  image: DesiredImage;
}

/** What this node started for a VM: its launch record, kept by the node across restarts. */
export interface LaunchedVm {
  uid: string;
  generation: number;
  spec: VmSpec;
  image: { format: ImageFormat; hash: string | null; initrdHash?: string };
}

export interface ObservedVm {
  state: 'running' | 'stopped' | 'exited' | 'missing' | 'unknown';
  exit?: { code: number | null; signal: string | null; at: string };
  launched?: LaunchedVm;
}

export type VmAction =
  | { kind: 'pull'; hashes: string[] }
  | { kind: 'create'; start: boolean }
  | { kind: 'start' }
  | { kind: 'stop' }
  | { kind: 'restart' }
  | { kind: 'recreate'; start: boolean }
  | { kind: 'record' }
  | { kind: 'delete' }
  | { kind: 'none'; why: string };

/** The effect of moving a launched VM to the desired spec and image (state/effects.ts decides). */
export function launchEffect(launched: LaunchedVm, desired: DesiredVm): Effect {
  const fx = changeEffects('VirtualMachine', comparable('VirtualMachine', {}, launched.spec), comparable('VirtualMachine', {}, desired.spec)).effect;
  let image: Effect = 'none';
  if (launched.image.format !== desired.image.format) image = 'recreate';
  else if (launched.image.hash !== desired.image.hash) image = desired.image.format === 'raw' || desired.image.format === 'qcow2' ? 'recreate' : 'restart';
  else if ((launched.image.initrdHash ?? null) !== (desired.image.initrdHash ?? null)) image = 'restart';
  return maxEffect(fx, image);
}

export function planVm(desired: DesiredVm | undefined, observed: ObservedVm | undefined, hasContent: (hash: string) => boolean): VmAction {
  const exists = observed !== undefined && observed.state !== 'missing';
  if (!desired) return exists || observed?.launched ? { kind: 'delete' } : { kind: 'none', why: 'not placed here' };

  const want = desired.spec.state ?? 'Running';
  const needed = [desired.image.hash, desired.image.initrdHash].filter((h): h is string => !!h && !hasContent(h));
  if (desired.image.hash === null) return { kind: 'none', why: `the content of Image/${desired.image.name} is not known yet` };
  if (needed.length > 0) return { kind: 'pull', hashes: needed };

  if (!exists || !observed?.launched) {
    return { kind: 'create', start: want === 'Running' };
  }
  if (observed.state === 'unknown') return { kind: 'none', why: 'the driver cannot tell the state yet' };
  const launched = observed.launched;
  // Same name, new VM (deleted and applied again): nothing of the old one may survive.
  if (launched.uid !== desired.uid) return { kind: 'recreate', start: want === 'Running' };

  if (launched.generation !== desired.generation || launchEffect(launched, desired) !== 'none') {
    const effect = launchEffect(launched, desired);
    if (effect === 'recreate') return { kind: 'recreate', start: want === 'Running' };
    if (effect === 'restart' && observed.state === 'running' && want === 'Running') return { kind: 'restart' };
    // In place, or a restart-worthy change to a VM that is not running: the next start uses it.
    return { kind: 'record' };
  }

  if (want === 'Stopped') return observed.state === 'running' ? { kind: 'stop' } : { kind: 'none', why: 'stopped, as desired' };
  if (observed.state === 'running') return { kind: 'none', why: 'running, as desired' };
  if (observed.state === 'stopped') return { kind: 'start' };
  // Exited on its own: the restart policy decides (Kubernetes' Always / OnFailure / Never).
  const failed = observed.exit ? observed.exit.code !== 0 || observed.exit.signal !== null : true;
  const policy = desired.spec.restartPolicy ?? 'Always';
  if (policy === 'Always' || (policy === 'OnFailure' && failed)) return { kind: 'start' };
  return { kind: 'none', why: failed ? `exited (${describeExit(observed.exit)}); restartPolicy ${policy}` : `completed; restartPolicy ${policy}` };
}

export function describeExit(exit: ObservedVm['exit']): string {
  if (!exit) return 'exit status unknown';
  if (exit.signal) return `killed by ${exit.signal}`;
  return `exit code ${exit.code}`;
}
