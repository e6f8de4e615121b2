import type { Entry, RawNode, SnapshotMeta } from '../../src/raft/core/index.js';

// Raft's safety properties (Raft paper, figure 3), checked by the simulator after every step:
// - Election Safety: at most one leader per term.
// - Log Matching: two logs with an entry of the same index and term are identical up to it.
//   Checked incrementally: every entry that appears in any log is registered by (index, term)
//   together with its content and the term of the entry before it; by induction two logs that
//   agree on (index, term) then agree on everything before it.
// - Leader Completeness: an entry committed in term T is in the log of every leader of a later
//   term. Commitment is observed where it happens (a leader's commit index moving, in that
//   leader's term); a new leader is checked against everything committed in earlier terms, and
//   a newly observed commit against every live leader of a later term.
// - State Machine Safety: no two nodes apply different entries at one index; every node applies
//   a contiguous prefix of one global sequence (snapshots included).
// - A live node's commit index never decreases; applied <= committed.

export class InvariantViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvariantViolation';
  }
}

/** What the checker needs of a simulated node. */
export interface CheckedNode {
  readonly id: string;
  readonly up: boolean;
  readonly raw: RawNode | undefined;
}

interface CommittedEntry {
  term: number;
  hash: number;
  /** The term in which a leader was seen committing it (Infinity until one is). */
  commitTerm: number;
  by: string;
}

interface LogRecord {
  term: number;
  hash: number;
  prevTerm: number;
  by: string;
}

interface NodeMemo {
  lastCommit: number;
  /** As leader: the commit index already recorded. */
  leaderCommit: number;
  leaderTerm: number;
  lastApplied: number;
  /** Entries already checked in this node's log, with the predecessor term they were checked with. */
  checked: WeakMap<Entry, number>;
}

const hashes = new WeakMap<Entry, number>();

/** FNV-1a over the entry's type and data (content only: index and term are compared apart). */
export function entryHash(e: Entry): number {
  let h = hashes.get(e);
  if (h !== undefined) return h;
  h = e.type === 'conf' ? 0x811c9dc5 ^ 1 : 0x811c9dc5;
  const d = e.data;
  for (let i = 0; i < d.length; i++) h = Math.imul(h ^ d[i]!, 0x01000193);
  h >>>= 0;
  hashes.set(e, h);
  return h;
}

export class SafetyChecker {
  private readonly leaders = new Map<number, string>();
  private readonly committed: (CommittedEntry | undefined)[] = [];
  private maxCommitted = 0;
  private readonly logs = new Map<number, LogRecord[]>();
  private readonly memos = new Map<string, NodeMemo>();
  /** Counters for the report. */
  readonly stats = { leaders: 0, committed: 0, applied: 0, logEntries: 0 };

  get committedIndex(): number {
    return this.maxCommitted;
  }

  /** Everything up to `index` is committed from the start (a bootstrap snapshot). */
  seedCommitted(index: number, term: number): void {
    for (let i = 1; i <= index; i++) this.committed[i] = { term, hash: 0, commitTerm: 0, by: 'bootstrap' };
    this.maxCommitted = Math.max(this.maxCommitted, index);
  }

  /** A node (re)started from its persisted state. */
  nodeStarted(id: string, raw: RawNode, appliedFromSnapshot: number): void {
    const log = raw.log();
    this.memos.set(id, {
      lastCommit: log.committed,
      leaderCommit: Infinity,
      leaderTerm: -1,
      lastApplied: appliedFromSnapshot,
      checked: new WeakMap(),
    });
  }

  /** After every simulation step, over all nodes. */
  afterStep(nodes: readonly CheckedNode[]): void {
    for (const n of nodes) {
      if (!n.up || n.raw === undefined) continue;
      const raw = n.raw;
      const memo = this.memo(n.id);
      const log = raw.log();
      const term = raw.term;
      const committed = log.committed;

      if (committed < memo.lastCommit) {
        this.fail(`commit index of ${n.id} went back from ${memo.lastCommit} to ${committed}`);
      }
      memo.lastCommit = committed;
      if (log.applied > committed) this.fail(`${n.id} applied ${log.applied} > committed ${committed}`);

      this.checkLog(n.id, raw);

      if (raw.role === 'leader') {
        const other = this.leaders.get(term);
        if (other === undefined) {
          this.leaders.set(term, n.id);
          this.stats.leaders++;
        } else if (other !== n.id) {
          this.fail(`Election Safety: ${other} and ${n.id} are both leaders of term ${term}`);
        }
        if (memo.leaderTerm !== term) {
          memo.leaderTerm = term;
          memo.leaderCommit = committed;
          this.checkLeaderHasCommitted(n.id, raw);
        }
        if (committed > memo.leaderCommit) {
          for (let i = Math.max(memo.leaderCommit + 1, log.firstIndex()); i <= committed; i++) {
            const e = log.entry(i);
            if (e === undefined) this.fail(`leader ${n.id} committed ${i} but has no such entry`);
            this.record(e, term, n.id, nodes);
          }
          memo.leaderCommit = committed;
        }
      } else {
        memo.leaderTerm = -1;
      }
    }
  }

  /** A node applied a committed entry. */
  onApply(id: string, e: Entry): void {
    const memo = this.memo(id);
    if (e.index !== memo.lastApplied + 1) {
      this.fail(`State Machine Safety: ${id} applied ${e.index} right after ${memo.lastApplied}`);
    }
    memo.lastApplied = e.index;
    this.stats.applied++;
    this.record(e, Infinity, id, []);
  }

  /** A node installed a snapshot received from the leader. */
  onSnapshot(id: string, meta: SnapshotMeta): void {
    const memo = this.memo(id);
    if (meta.index < memo.lastApplied) this.fail(`${id} installed snapshot ${meta.index} below its applied ${memo.lastApplied}`);
    const c = this.committed[meta.index];
    if (c === undefined) {
      this.fail(`State Machine Safety: ${id} installed a snapshot at ${meta.index}, not known to be committed (max ${this.maxCommitted})`);
    }
    if (c.term !== meta.term) {
      this.fail(`State Machine Safety: ${id} installed a snapshot at ${meta.index} term ${meta.term}; committed entry there has term ${c.term}`);
    }
    memo.lastApplied = meta.index;
  }

  /** Registers a committed entry, and checks it against what was committed there before. */
  private record(e: Entry, commitTerm: number, by: string, nodes: readonly CheckedNode[]): void {
    const h = entryHash(e);
    const c = this.committed[e.index];
    if (c !== undefined) {
      if (c.term !== e.term || c.hash !== h) {
        this.fail(
          `State Machine Safety: index ${e.index} was committed as term ${c.term} (seen at ${c.by}), ` +
            `now term ${e.term} at ${by}${c.hash !== h && c.term === e.term ? ' with different content' : ''}`,
        );
      }
      if (commitTerm >= c.commitTerm) return;
      c.commitTerm = commitTerm;
    } else {
      this.committed[e.index] = { term: e.term, hash: h, commitTerm, by };
      this.stats.committed++;
      if (e.index > this.maxCommitted) this.maxCommitted = e.index;
    }
    if (commitTerm === Infinity) return;
    // Leaders of later terms must already hold it.
    for (const n of nodes) {
      if (n.up && n.raw !== undefined && n.raw.role === 'leader' && n.raw.term > commitTerm) {
        this.checkHas(n.id, n.raw, e.index, `committed in term ${commitTerm} (by ${by})`);
      }
    }
  }

  private checkLeaderHasCommitted(id: string, raw: RawNode): void {
    const term = raw.term;
    const first = raw.log().firstIndex();
    for (let i = first; i <= this.maxCommitted; i++) {
      const c = this.committed[i];
      if (c !== undefined && c.commitTerm < term) this.checkHas(id, raw, i, `committed in term ${c.commitTerm}`);
    }
  }

  private checkHas(id: string, raw: RawNode, index: number, why: string): void {
    const log = raw.log();
    if (index < log.firstIndex()) return; // covered by its snapshot, itself checked
    const c = this.committed[index]!;
    const t = log.term(index);
    if (t !== c.term) {
      this.fail(
        `Leader Completeness: ${id}, leader of term ${raw.term}, has ${t === undefined ? 'no entry' : `term ${t}`} at ` +
          `${index}, which was ${why} with term ${c.term}`,
      );
    }
  }

  /** Log Matching over the entries this node has not persisted yet (persisted ones were checked then). */
  private checkLog(id: string, raw: RawNode): void {
    const log = raw.log();
    const ents = log.unstableEntries();
    if (ents.length === 0) return;
    const memo = this.memo(id);
    let prevTerm = log.term(ents[0]!.index - 1);
    if (prevTerm === undefined) this.fail(`${id}: no term for the entry before unstable ${ents[0]!.index}`);
    for (const e of ents) {
      if (memo.checked.get(e) !== prevTerm) {
        this.registerLogEntry(id, e, prevTerm);
        memo.checked.set(e, prevTerm);
      }
      prevTerm = e.term;
    }
  }

  private registerLogEntry(id: string, e: Entry, prevTerm: number): void {
    const h = entryHash(e);
    let recs = this.logs.get(e.index);
    if (recs === undefined) this.logs.set(e.index, (recs = []));
    for (const r of recs) {
      if (r.term !== e.term) continue;
      if (r.hash !== h || r.prevTerm !== prevTerm) {
        this.fail(
          `Log Matching: entry (${e.index}, term ${e.term}) differs between ${r.by} and ${id}` +
            (r.hash !== h ? ' in content' : ` in the term of the entry before it (${r.prevTerm} vs ${prevTerm})`),
        );
      }
      return;
    }
    recs.push({ term: e.term, hash: h, prevTerm, by: id });
    this.stats.logEntries++;
  }

  private memo(id: string): NodeMemo {
    const m = this.memos.get(id);
    if (m === undefined) throw new Error(`checker: node ${id} was never started`);
    return m;
  }

  private fail(msg: string): never {
    throw new InvariantViolation(msg);
  }
}
