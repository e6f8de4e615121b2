import { describe, it, expect } from 'vitest';
import { jointCommitted, jointVote, majorityCommitted, majorityVote } from './quorum.js';

const acked = (m: Record<string, number>) => (id: string): number | undefined => m[id];
const votes = (m: Record<string, boolean>): Map<string, boolean> => new Map(Object.entries(m));

describe('quorum', () => {
  it('majority commit index is the floor(n/2)+1-th largest acknowledgement', () => {
    expect(majorityCommitted(new Set(['a']), acked({ a: 5 }))).toBe(5);
    expect(majorityCommitted(new Set(['a', 'b', 'c']), acked({ a: 5, b: 3, c: 1 }))).toBe(3);
    expect(majorityCommitted(new Set(['a', 'b', 'c', 'd']), acked({ a: 5, b: 3, c: 1, d: 9 }))).toBe(3);
    expect(majorityCommitted(new Set(['a', 'b', 'c']), acked({ a: 5 }))).toBe(0);
    expect(majorityCommitted(new Set(), acked({}))).toBe(Infinity);
  });

  it('majority votes: won, lost, or still pending', () => {
    const abc = new Set(['a', 'b', 'c']);
    expect(majorityVote(abc, votes({ a: true, b: true }))).toBe('won');
    expect(majorityVote(abc, votes({ a: true, b: false }))).toBe('pending');
    expect(majorityVote(abc, votes({ a: true, b: false, c: false }))).toBe('lost');
    expect(majorityVote(abc, votes({ x: true, y: true }))).toBe('pending'); // non-voters do not count
    expect(majorityVote(new Set(), votes({}))).toBe('won');
  });

  it('joint configurations need both halves', () => {
    const j = [new Set(['a', 'b', 'c']), new Set(['c', 'd', 'e'])] as const;
    expect(jointCommitted(j, acked({ a: 9, b: 9, c: 4, d: 4, e: 1 }))).toBe(4);
    expect(jointVote(j, votes({ a: true, b: true }))).toBe('pending');
    expect(jointVote(j, votes({ a: true, b: true, d: true, e: true }))).toBe('won');
    expect(jointVote(j, votes({ a: true, b: true, d: false, e: false }))).toBe('lost');
    const simple = [new Set(['a', 'b', 'c']), new Set<string>()] as const;
    expect(jointCommitted(simple, acked({ a: 2, b: 2, c: 1 }))).toBe(2);
  });
});
