// A linearizability checker for a key-value history, in the style of Porcupine: the Wing & Gong
// search with Lowe's memoization (a configuration already seen, i.e. the same set of linearized
// operations AND the same state, is not explored twice). Keys are independent objects, so the
// history is checked one key at a time (linearizability is compositional).
//
// An operation whose client gave up (timed out) has an unknown outcome: its return time is
// Infinity and its output unknown, so it may take effect at any point after its call, or never
// (taking effect after every other operation is indistinguishable from never).

export interface Operation {
  id: number;
  client: string;
  key: string;
  kind: 'put' | 'get' | 'cas';
  /** put/cas: the value written. */
  value?: string;
  /** cas: the value expected. */
  expected?: string | null;
  /** get: the value read; cas: whether it swapped; undefined while unknown. */
  output?: string | null | boolean;
  /** Logical times; distinct for every call and return. ret is Infinity if unknown. */
  call: number;
  ret: number;
}

export type CheckResult =
  | { ok: true; keys: number; ops: number; explored: number }
  | { ok: false; key: string; ops: Operation[]; explored: number; reason: 'not linearizable' | 'search budget exhausted' };

type State = string | null;

function step(state: State, op: Operation): { ok: boolean; next: State } {
  switch (op.kind) {
    case 'put':
      return { ok: true, next: op.value ?? null };
    case 'get':
      return { ok: op.output === state, next: state };
    case 'cas': {
      const matches = state === (op.expected ?? null);
      if (op.output === undefined) return { ok: true, next: matches ? (op.value ?? null) : state };
      if (op.output === true) return { ok: matches, next: matches ? (op.value ?? null) : state };
      return { ok: !matches, next: state };
    }
  }
}

interface Node {
  op: Operation | undefined;
  index: number;
  isCall: boolean;
  /** For a call: its return node. */
  match: Node | undefined;
  prev: Node | undefined;
  next: Node | undefined;
}

/** Checks every key's sub-history; stops at the first key that cannot be linearized. */
export function checkHistory(ops: readonly Operation[], budget = 5_000_000): CheckResult {
  const byKey = new Map<string, Operation[]>();
  for (const op of ops) {
    let list = byKey.get(op.key);
    if (list === undefined) byKey.set(op.key, (list = []));
    list.push(op);
  }
  let explored = 0;
  for (const key of [...byKey.keys()].sort()) {
    const list = withoutUnseenWrites(byKey.get(key)!);
    const r = checkSingle(list, budget - explored);
    explored += r.explored;
    if (r.result !== 'ok') {
      return {
        ok: false,
        key,
        ops: list,
        explored,
        reason: r.result === 'fail' ? 'not linearizable' : 'search budget exhausted',
      };
    }
  }
  return { ok: true, keys: byKey.size, ops: ops.length, explored };
}

/**
 * A key's history less its puts of unknown outcome whose value no read returned: the verdict is
 * the same (such a put may be taken as never applied; had it been applied, no read saw it, so
 * leaving it out changes no read's answer), and each one left in would multiply the search.
 * Only for plain registers: a cas may depend on a value it never returns.
 */
function withoutUnseenWrites(ops: Operation[]): Operation[] {
  if (ops.some((op) => op.kind === 'cas')) return ops;
  const seen = new Set(ops.flatMap((op) => (op.kind === 'get' && typeof op.output === 'string' ? [op.output] : [])));
  return ops.filter((op) => !(op.kind === 'put' && op.ret === Infinity && !seen.has(op.value ?? '')));
}

function checkSingle(ops: readonly Operation[], budget: number): { result: 'ok' | 'fail' | 'budget'; explored: number } {
  // The history as one list of call and return events in time order.
  const events: Node[] = [];
  ops.forEach((op, index) => {
    const call: Node = { op, index, isCall: true, match: undefined, prev: undefined, next: undefined };
    const ret: Node = { op, index, isCall: false, match: undefined, prev: undefined, next: undefined };
    call.match = ret;
    events.push(call, ret);
  });
  const time = (n: Node): number => (n.isCall ? n.op!.call : n.op!.ret);
  // Calls before returns at equal times (only Infinity returns tie), so ties count as concurrent.
  events.sort((a, b) => time(a) - time(b) || (a.isCall === b.isCall ? a.index - b.index : a.isCall ? -1 : 1));
  const head: Node = { op: undefined, index: -1, isCall: false, match: undefined, prev: undefined, next: undefined };
  let prev = head;
  for (const e of events) {
    prev.next = e;
    e.prev = prev;
    prev = e;
  }

  const words = Math.ceil(ops.length / 32) || 1;
  const linearized = new Uint32Array(words);
  const seen = new Set<string>();
  const stack: { node: Node; state: State }[] = [];
  let state: State = null;
  let entry = head.next;
  let explored = 0;

  const lift = (n: Node): void => {
    n.prev!.next = n.next;
    if (n.next) n.next.prev = n.prev;
    const m = n.match!;
    m.prev!.next = m.next;
    if (m.next) m.next.prev = m.prev;
  };
  const unlift = (n: Node): void => {
    const m = n.match!;
    m.prev!.next = m;
    if (m.next) m.next.prev = m;
    n.prev!.next = n;
    if (n.next) n.next.prev = n;
  };
  const flip = (i: number): void => {
    linearized[i >> 5]! ^= 1 << (i & 31);
  };

  while (head.next !== undefined) {
    if (++explored > budget) return { result: 'budget', explored };
    if (entry === undefined) throw new Error('linearizability search ran off the end of the history');
    if (entry.isCall) {
      const r = step(state, entry.op!);
      if (r.ok) {
        flip(entry.index);
        const key = `${linearized.join(',')}|${r.next === null ? '\u0000' : r.next}`;
        if (!seen.has(key)) {
          seen.add(key);
          stack.push({ node: entry, state });
          state = r.next;
          lift(entry);
          entry = head.next;
          continue;
        }
        flip(entry.index);
      }
      entry = entry.next;
    } else {
      // A return: every operation that returned by now must already be linearized. Backtrack.
      const top = stack.pop();
      if (top === undefined) return { result: 'fail', explored };
      state = top.state;
      flip(top.node.index);
      unlift(top.node);
      entry = top.node.next;
    }
  }
  return { result: 'ok', explored };
}

/** A readable dump of a key's history, for failure reports. */
export function describeOps(ops: readonly Operation[]): string {
  const fmt = (v: unknown): string => (v === undefined ? '?' : JSON.stringify(v));
  return [...ops]
    .sort((a, b) => a.call - b.call)
    .map((o) => {
      const what =
        o.kind === 'put'
          ? `put(${fmt(o.value)})`
          : o.kind === 'get'
            ? `get() -> ${fmt(o.output)}`
            : `cas(${fmt(o.expected)} -> ${fmt(o.value)}) -> ${fmt(o.output)}`;
      return `  [${o.call}, ${o.ret === Infinity ? 'inf' : o.ret}] ${o.client} ${what}`;
    })
    .join('\n');
}
