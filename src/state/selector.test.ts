import { describe, expect, it } from 'vitest';
import { matchesSelector, parseSelector, SelectorError } from './selector.js';

// Label selectors as kubectl's -l reads them.

const web = { app: 'web', tier: 'front' };
const db = { app: 'db' };
const none = {};
const pick = (sel: string) => [web, db, none].map((l) => matchesSelector(l, parseSelector(sel)));

describe('label selectors', () => {
  it('equality, inequality (which also matches resources without the key) and existence', () => {
    expect(pick('app=web')).toEqual([true, false, false]);
    expect(pick('app==web')).toEqual([true, false, false]);
    expect(pick('app!=web')).toEqual([false, true, true]);
    expect(pick('tier')).toEqual([true, false, false]);
    expect(pick('!tier')).toEqual([false, true, true]);
  });

  it('sets, and requirements that must all hold', () => {
    expect(pick('app in (web, db)')).toEqual([true, true, false]);
    expect(pick('app notin (web)')).toEqual([false, true, true]);
    expect(pick('app in (web,db),!tier')).toEqual([false, true, false]);
    expect(pick('app=web, tier=front')).toEqual([true, false, false]);
  });

  it('an empty selector selects everything', () => {
    expect(pick('')).toEqual([true, true, true]);
    expect(parseSelector('  ')).toEqual([]);
  });

  it('refuses what it cannot read, naming the part and what it expected', () => {
    const err = (s: string) => {
      try {
        parseSelector(s);
      } catch (e) {
        expect(e).toBeInstanceOf(SelectorError);
        return (e as Error).message;
      }
      throw new Error(`accepted ${s}`);
    };
    expect(err('app=web,,tier')).toMatch(/empty requirement/);
    expect(err('app=we b')).toMatch(/"app=we b": expected a label value/);
    expect(err('-app=web')).toMatch(/expected a label key .*, got "-app"/);
    expect(err('app (x)')).toMatch(/expected KEY, !KEY, KEY=VALUE/);
    expect(err('app in (a,b c)')).toMatch(/expected a label value/);
  });
});
