import { describe, it, expect } from 'vitest';
import { Inflights } from './inflights.js';
import { Progress } from './progress.js';
import { ReadOnly } from './read-only.js';

describe('Inflights', () => {
  it('is a window of message end indices, freed by acknowledgement', () => {
    const f = new Inflights(3);
    f.add(5);
    f.add(7);
    f.add(9);
    expect(f.full()).toBe(true);
    expect(() => f.add(10)).toThrow();
    f.freeLE(7);
    expect(f.length).toBe(1);
    f.add(11);
    f.add(12); // wraps around the ring
    f.freeFirstOne();
    expect(f.length).toBe(2);
    f.freeLE(100);
    expect(f.length).toBe(0);
  });
});

describe('Progress', () => {
  it('probe sends one message at a time; replicate pipelines within the window', () => {
    const pr = new Progress(6, 2, false);
    expect(pr.isPaused()).toBe(false);
    pr.sentEntries(1, 6);
    expect(pr.isPaused()).toBe(true); // waiting for the probe's answer
    expect(pr.maybeUpdate(6)).toBe(true);
    pr.becomeReplicate();
    expect(pr.next).toBe(7);
    pr.sentEntries(3, 9);
    pr.sentEntries(1, 10);
    expect([pr.next, pr.isPaused()]).toEqual([11, true]);
    pr.inflights.freeLE(9);
    expect(pr.isPaused()).toBe(false);
  });

  it('a rejection moves next back; stale rejections are ignored', () => {
    const pr = new Progress(11, 4, false);
    pr.match = 5;
    pr.becomeReplicate(); // next = 6
    pr.sentEntries(4, 9);
    expect(pr.maybeDecrTo(4, 4)).toBe(false); // at or below match: stale
    expect(pr.maybeDecrTo(8, 7)).toBe(true);
    expect(pr.next).toBe(6);
    pr.becomeProbe();
    expect(pr.maybeDecrTo(3, 1)).toBe(false); // probing happens at next - 1 = 5 only
    expect(pr.maybeDecrTo(5, 2)).toBe(true);
    expect(pr.next).toBe(6); // never below match + 1
  });

  it('after a snapshot, probing resumes after it', () => {
    const pr = new Progress(3, 4, false);
    pr.becomeSnapshot(50);
    expect(pr.isPaused()).toBe(true);
    pr.becomeProbe();
    expect(pr.next).toBe(51);
  });
});

describe('ReadOnly', () => {
  it('confirms requests in order: a later confirmation answers earlier ones too', () => {
    const ro = new ReadOnly();
    ro.addRequest(5, 'a', 'r1');
    ro.addRequest(6, 'b', 'r2');
    ro.addRequest(6, 'b', 'r2'); // repeated: ignored
    expect(ro.lastPendingRequestCtx()).toBe('r2');
    expect(ro.recvAck('x', 'r2')?.size).toBe(1);
    expect(ro.advance('r2').map((r) => [r.ctx, r.index, r.from])).toEqual([
      ['r1', 5, 'a'],
      ['r2', 6, 'b'],
    ]);
    expect(ro.size).toBe(0);
    expect(ro.recvAck('x', 'r1')).toBeUndefined();
  });
});
