import { describe, expect, it } from 'vitest';
import { withDefaults, type VmSpec } from '../state/index.js';
import { planVm, type DesiredVm, type LaunchedVm, type ObservedVm, type VmAction } from './vm-plan.js';
import { reportVm } from './vm-status.js';

// Table tests of the per-VM decision: every action, and what decides between them.

const H1 = `blake3:${'1'.repeat(64)}`;
const H2 = `blake3:${'2'.repeat(64)}`;
const spec = (s: Partial<VmSpec> = {}) => withDefaults('VirtualMachine', { image: 'tiny', ...s }) as VmSpec;
const desired = (s: Partial<VmSpec> = {}, o: Partial<DesiredVm> = {}): DesiredVm => ({
  name: 'web-1',
  uid: 'u1',
  generation: 1,
  spec: spec(s),
  image: { name: 'tiny', format: 'kernel', hash: H1, readyPattern: 'READY' },
  ...o,
});
const launched = (s: Partial<VmSpec> = {}, o: Partial<LaunchedVm> = {}): LaunchedVm => ({ uid: 'u1', generation: 1, spec: spec(s), image: { format: 'kernel', hash: H1 }, ...o });
const obs = (state: ObservedVm['state'], l: LaunchedVm | undefined = launched(), exit?: ObservedVm['exit']): ObservedVm => ({ state, ...(l ? { launched: l } : {}), ...(exit ? { exit } : {}) });
const have = (...hashes: string[]) => (h: string) => hashes.includes(h);

describe('planVm', () => {
  const cases: [string, DesiredVm | undefined, ObservedVm | undefined, (h: string) => boolean, VmAction['kind'], Partial<VmAction>?][] = [
    ['nothing placed, nothing here', undefined, undefined, have(), 'none'],
    ['placed elsewhere now, still here: delete', undefined, obs('running'), have(), 'delete'],
    ['image content missing: pull it first', desired(), undefined, have(), 'pull', { hashes: [H1] }],
    ['image and initrd missing: pull both', desired({}, { image: { name: 'tiny', format: 'kernel', hash: H1, initrdHash: H2 } }), undefined, have(H1), 'pull', { hashes: [H2] }],
    ['new VM, image here: create and start', desired(), undefined, have(H1), 'create', { start: true }],
    ['new VM desired Stopped: create without starting', desired({ state: 'Stopped' }), obs('missing', undefined), have(H1), 'create', { start: false }],
    ['running as desired', desired(), obs('running'), have(H1), 'none'],
    ['driver unsure', desired(), obs('unknown'), have(H1), 'none'],
    ['desired Stopped, running: stop', desired({ state: 'Stopped' }), obs('running', launched({ state: 'Stopped' })), have(H1), 'stop'],
    ['desired Stopped, stopped: nothing', desired({ state: 'Stopped' }), obs('stopped', launched({ state: 'Stopped' })), have(H1), 'none'],
    ['stopped by us, desired Running: start', desired(), obs('stopped'), have(H1), 'start'],
    ['memory changed: recreate', desired({ memoryMiB: 512 }, { generation: 2 }), obs('running'), have(H1), 'recreate', { start: true }],
    ['kernelArgs changed while running: restart', desired({ kernelArgs: 'quiet' }, { generation: 2 }), obs('running'), have(H1), 'restart'],
    ['kernelArgs changed while stopped: record, the next start uses it', desired({ kernelArgs: 'quiet' }, { generation: 2 }), obs('stopped'), have(H1), 'record'],
    ['restartPolicy changed: in place', desired({ restartPolicy: 'Never' }, { generation: 2 }), obs('running'), have(H1), 'record'],
    ['state changed to Stopped: record first (then stop)', desired({ state: 'Stopped' }, { generation: 2 }), obs('running'), have(H1), 'record'],
    ['new kernel content: restart', desired({}, { image: { name: 'tiny', format: 'kernel', hash: H2 } }), obs('running'), have(H2), 'restart'],
    ['new disk content: recreate (the overlay sits on the old one)', desired({}, { image: { name: 'disk', format: 'qcow2', hash: H2 } }), obs('running', launched({}, { image: { format: 'qcow2', hash: H1 } })), have(H2), 'recreate'],
    ['same name, new VM (other uid): recreate', desired({}, { uid: 'u2' }), obs('running'), have(H1), 'recreate'],
    ['exited 0, Always: start', desired(), obs('exited', launched(), { code: 0, signal: null, at: 't' }), have(H1), 'start'],
    ['exited 1, OnFailure: start', desired({ restartPolicy: 'OnFailure' }), obs('exited', launched({ restartPolicy: 'OnFailure' }), { code: 1, signal: null, at: 't' }), have(H1), 'start'],
    ['exited 0, OnFailure: leave it', desired({ restartPolicy: 'OnFailure' }), obs('exited', launched({ restartPolicy: 'OnFailure' }), { code: 0, signal: null, at: 't' }), have(H1), 'none'],
    ['killed, Never: leave it', desired({ restartPolicy: 'Never' }), obs('exited', launched({ restartPolicy: 'Never' }), { code: null, signal: 'SIGKILL', at: 't' }), have(H1), 'none'],
    ['ticket image not resolved yet: wait', desired({}, { image: { name: 'tiny', format: 'kernel', hash: null } }), undefined, have(), 'none'],
  ];
  for (const [name, d, o, hasContent, kind, extra] of cases) {
    it(name, () => {
      const a = planVm(d, o, hasContent);
      expect(a.kind).toBe(kind);
      if (extra) expect(a).toMatchObject(extra);
    });
  }
});

describe('reportVm', () => {
  it('is Running only when the driver sees it running and the console printed the ready line', () => {
    expect(reportVm(desired(), 'n1', { observed: obs('running'), ready: false })).toMatchObject({ phase: 'Starting', observedGeneration: 1 });
    const r = reportVm(desired(), 'n1', { observed: obs('running'), ready: true });
    expect(r.phase).toBe('Running');
    expect(r.conditions.map((c) => `${c.type}=${c.status}`)).toEqual(['Scheduled=True', 'ImageReady=True', 'Running=True']);
  });

  it('shows Pulling with progress, Stopping while stopping, and Failed for a crash the policy keeps down', () => {
    expect(reportVm(desired(), 'n1', { observed: undefined, ready: false, pull: { bytes: 1 << 20, total: 4 << 20 } })).toMatchObject({ phase: 'Pulling', message: expect.stringContaining('25%') });
    expect(reportVm(desired(), 'n1', { observed: obs('running'), ready: true, acting: 'stop' }).phase).toBe('Stopping');
    const f = reportVm(desired({ restartPolicy: 'Never' }), 'n1', { observed: obs('exited', launched(), { code: 3, signal: null, at: 't' }), ready: false });
    expect([f.phase, f.message]).toEqual(['Failed', 'exited (exit code 3); restartPolicy Never']);
    expect(reportVm(desired(), 'n1', { observed: obs('running'), ready: true, error: { message: 'boom', count: 5 } }).phase).toBe('Failed');
  });

  it('says why a VM still waits when its last attempts failed, before it counts as Failed', () => {
    const r = reportVm(desired(), 'n1', { observed: obs('missing'), ready: false, error: { message: 'no node holds blake3:ab yet', count: 2 } });
    expect([r.phase, r.message]).toEqual(['Pending', 'not created yet; last attempt failed (2x): no node holds blake3:ab yet; retrying']);
  });

  it('does not call an image ready that is not in the local store, even when no pull is running', () => {
    const r = reportVm(desired(), 'n1', { observed: obs('missing'), ready: false, imagePresent: false, error: { message: 'cannot fetch blake3:ab', count: 1 } });
    expect(r.phase).toBe('Pulling');
    expect(r.conditions.find((c) => c.type === 'ImageReady')).toMatchObject({ status: 'False', reason: 'NotPresent' });
    expect(r.message).toMatch(/not in the local store yet; last attempt failed \(1x\): cannot fetch/);
    expect(reportVm(desired(), 'n1', { observed: obs('missing'), ready: false, imagePresent: true }).conditions[1]!.status).toBe('True');
  });
});
