import { isLabelKey, isLabelValue, LABEL_KEY_WORDS } from './labels.js';
import type { Labels } from './types.js';

// Label selectors, as kubectl's `-l` reads them: requirements joined by commas, all of which must
// hold. Equality (`app=web`, `app==web`, `app!=web`), existence (`app`, `!app`) and sets
// (`tier in (a,b)`, `tier notin (a,b)`). `!=` and `notin` also match resources without the key,
// as in Kubernetes. Pure: the API filters with it before building any status.

export type Requirement =
  | { key: string; op: 'exists' | 'absent' }
  | { key: string; op: 'in' | 'notin'; values: string[] };

export type Selector = readonly Requirement[];

export class SelectorError extends Error {}


/** Parses a selector; an empty one selects everything. Throws SelectorError naming the part. */
export function parseSelector(text: string): Selector {
  const out: Requirement[] = [];
  for (const part of splitTop(text)) {
    const p = part.trim();
    if (p === '') {
      if (text.trim() === '') continue;
      throw new SelectorError(`label selector ${JSON.stringify(text)}: an empty requirement (two commas, or one at an end)`);
    }
    out.push(requirement(p, text));
  }
  return out;
}

export function matchesSelector(labels: Labels | undefined, sel: Selector): boolean {
  for (const r of sel) {
    const has = labels !== undefined && Object.prototype.hasOwnProperty.call(labels, r.key);
    const v = has ? labels![r.key] : undefined;
    switch (r.op) {
      case 'exists':
        if (!has) return false;
        break;
      case 'absent':
        if (has) return false;
        break;
      case 'in':
        if (v === undefined || !r.values.includes(v)) return false;
        break;
      case 'notin':
        if (v !== undefined && r.values.includes(v)) return false;
        break;
    }
  }
  return true;
}

/** Commas outside parentheses separate requirements. */
function splitTop(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === ',' && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts;
}

function requirement(p: string, whole: string): Requirement {
  const fail = (why: string): never => {
    throw new SelectorError(`label selector ${JSON.stringify(whole)}: ${JSON.stringify(p)}: ${why}`);
  };
  const key = (k: string) => {
    k = k.trim();
    if (!isLabelKey(k)) fail(`expected ${LABEL_KEY_WORDS}, got ${JSON.stringify(k)}`);
    return k;
  };
  const value = (v: string) => {
    v = v.trim();
    if (!isLabelValue(v)) fail(`expected a label value (at most 63 letters, digits, "-", "_", "."), got ${JSON.stringify(v)}`);
    return v;
  };
  const set = /^(\S+)\s+(in|notin)\s*\((.*)\)$/.exec(p);
  if (set) return { key: key(set[1]!), op: set[2] as 'in' | 'notin', values: set[3]!.split(',').map(value) };
  const eq = /^([^!=]+?)\s*(==|=|!=)\s*(.*)$/.exec(p);
  if (eq) return { key: key(eq[1]!), op: eq[2] === '!=' ? 'notin' : 'in', values: [value(eq[3]!)] };
  if (p.startsWith('!')) return { key: key(p.slice(1)), op: 'absent' };
  if (/[\s()=!]/.test(p)) fail('expected KEY, !KEY, KEY=VALUE, KEY!=VALUE, KEY in (V,...) or KEY notin (V,...)');
  return { key: key(p), op: 'exists' };
}
