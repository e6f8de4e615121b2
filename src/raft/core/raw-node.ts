import { Raft } from './raft.js';
import type { ProgressState } from './progress.js';
import type { Storage } from './storage.js';
import {
  MESSAGE_TYPES,
  type ConfChange,
  type ConfState,
  type Config,
  type Entry,
  type HardState,
  type Message,
  type MessageType,
  type Ready,
  type Role,
  type SoftState,
} from './types.js';

// The driver's handle on the core, after etcd's rawnode.go. Feed it ticks, messages and requests;
// when hasReady(), take a ready(), do what it says (see Ready in types.ts), then advance(). At most
// one Ready is outstanding; the node keeps accepting step()/tick()/propose() while the driver
// works on it, so I/O never blocks the core.
//
// Membership: committed 'conf' entries take effect in advance() (the driver need not interpret
// them; decodeConfChange() tells it who joined or left, e.g. for the transport's peer list). A
// snapshot taken right after advance() at the applied index must record confState().

export interface PeerStatus {
  match: number;
  next: number;
  state: ProgressState;
  recentActive: boolean;
  learner: boolean;
}

export interface Status {
  id: string;
  term: number;
  vote: string | null;
  role: Role;
  leader: string | null;
  commit: number;
  applied: number;
  firstIndex: number;
  lastIndex: number;
  conf: ConfState;
  /** The leader's view of every member's log. */
  progress?: Record<string, PeerStatus>;
  leadTransferee: string | null;
}

/** Read-only access to the in-memory log, for tests and the simulator's invariant checks. */
export interface LogView {
  firstIndex(): number;
  lastIndex(): number;
  /** undefined if compacted or past the end. */
  term(i: number): number | undefined;
  /** The entry at i (persisted or not), or undefined if compacted or past the end. */
  entry(i: number): Entry | undefined;
  /** Entries not yet handed to the driver as persisted. */
  unstableEntries(): readonly Entry[];
  readonly committed: number;
  readonly applied: number;
}

// Every message type is one peers send each other (local requests are method calls here).
const NETWORK_MESSAGES: ReadonlySet<MessageType> = new Set<MessageType>(MESSAGE_TYPES);

const RESPONSES: ReadonlySet<MessageType> = new Set<MessageType>(['MsgAppResp', 'MsgHeartbeatResp']);

export class RawNode {
  private readonly raft: Raft;
  private prevSoft: SoftState;
  private prevHard: HardState;
  private outstanding: Ready | undefined;
  private logView: LogView | undefined;
  private readonly voteNotPersisted: boolean;

  constructor(cfg: Config, storage: Storage) {
    this.raft = new Raft(cfg, storage);
    this.prevSoft = this.raft.softState();
    this.prevHard = this.raft.hardState();
    this.voteNotPersisted = cfg.bugs?.voteNotPersisted === true;
  }

  tick(): void {
    this.raft.tick();
  }

  /** Campaigns now, as if the election timeout had passed (tests; a lone bootstrap node). */
  campaign(): void {
    this.raft.campaignNow();
  }

  /** Feeds a message from a peer. Messages of unknown types are refused; stale ones ignored. */
  step(m: Message): void {
    if (!NETWORK_MESSAGES.has(m.type)) throw new Error(`not a network message: ${String(m.type)}`);
    if (m.to !== this.raft.id) return;
    // Responses from peers that are not members (any more) are dropped, as in etcd.
    if (RESPONSES.has(m.type) && !this.raft.prs.progress.has(m.from)) return;
    this.raft.step(m);
  }

  /** Appends `data` to the log (leader only); throws RaftError otherwise. */
  propose(data: Uint8Array): void {
    this.raft.propose(data);
  }

  /** Proposes a membership change (leader only, one at a time); throws RaftError otherwise. */
  proposeConfChange(cc: ConfChange): void {
    this.raft.proposeConfChange(cc);
  }

  /**
   * Asks for a linearizable read; the answer comes back as a ReadState with this ctx (unique per
   * request). Throws RaftError 'not-leader' when no leader is known.
   */
  readIndex(ctx: string): void {
    this.raft.readIndex(ctx);
  }

  transferLeadership(to: string): void {
    this.raft.transferLeadership(to);
  }

  /** The transport reports whether the MsgSnap it was given for `to` arrived. */
  reportSnapshot(to: string, ok: boolean): void {
    this.raft.reportSnapshot(to, ok);
  }

  reportUnreachable(to: string): void {
    this.raft.reportUnreachable(to);
  }

  /** Whether ready() has work; false while a Ready is outstanding (advance() it first). */
  hasReady(): boolean {
    if (this.outstanding !== undefined) return false;
    const r = this.raft;
    r.flushAppends();
    if (r.msgs.length > 0 || r.readStates.length > 0) return true;
    if (r.log.unstable.entries.length > 0 || r.log.hasPendingSnapshot()) return true;
    if (r.log.hasNextCommittedEntries()) return true;
    if (!sameSoft(r.softState(), this.prevSoft)) return true;
    return !sameHard(r.hardState(), this.prevHard);
  }

  /**
   * The work to do now. The entries, messages and read states it hands over are no longer the
   * core's; call advance() once it is done. Only one Ready may be outstanding.
   */
  ready(): Ready {
    if (this.outstanding !== undefined) throw new Error('ready() called again before advance()');
    const r = this.raft;
    r.flushAppends();
    const rd: Ready = {
      entries: r.log.unstableEntries(),
      committedEntries: r.log.nextCommittedEntries(),
      messages: r.msgs,
      readStates: r.readStates,
      mustSync: false,
    };
    r.msgs = [];
    r.readStates = [];
    const snap = r.log.unstable.snapshot;
    if (snap !== undefined) rd.snapshot = snap;
    const soft = r.softState();
    if (!sameSoft(soft, this.prevSoft)) {
      rd.softState = soft;
      this.prevSoft = soft;
    }
    const hard = r.hardState();
    if (!sameHard(hard, this.prevHard)) {
      rd.mustSync = hard.term !== this.prevHard.term || hard.vote !== this.prevHard.vote;
      rd.hardState = this.voteNotPersisted ? { ...hard, vote: null } : hard;
      this.prevHard = hard;
    }
    if (rd.entries.length > 0 || rd.snapshot !== undefined) rd.mustSync = true;
    this.outstanding = rd;
    return rd;
  }

  /**
   * The outstanding Ready is done: its entries and snapshot are durable and its committed entries
   * applied. Applies the conf changes among them and moves the applied index.
   */
  advance(done?: Ready): void {
    const rd = this.outstanding;
    if (rd === undefined) throw new Error('advance() without an outstanding ready()');
    if (done !== undefined && done !== rd) throw new Error('advance() with a Ready that is not the outstanding one');
    this.outstanding = undefined;
    const r = this.raft;
    const last = rd.entries.at(-1);
    if (last !== undefined) r.log.stableTo(last.index, last.term);
    if (rd.snapshot !== undefined) r.log.stableSnapTo(rd.snapshot.meta.index);
    for (const e of rd.committedEntries) if (e.type === 'conf') r.applyConfEntry(e.data);
    const applied = rd.committedEntries.at(-1)?.index ?? rd.snapshot?.meta.index ?? 0;
    r.log.appliedTo(applied);
    r.maybeAutoLeave();
  }

  /** The configuration as of the applied index: store it with a snapshot taken right after advance(). */
  confState(): ConfState {
    return this.raft.prs.confState();
  }

  status(): Status {
    const r = this.raft;
    const s: Status = {
      id: r.id,
      term: r.term,
      vote: r.vote,
      role: r.role(),
      leader: r.lead,
      commit: r.log.committed,
      applied: r.log.applied,
      firstIndex: r.log.firstIndex(),
      lastIndex: r.log.lastIndex(),
      conf: r.prs.confState(),
      leadTransferee: r.leadTransferee,
    };
    if (r.state === 'leader') {
      const progress: Record<string, PeerStatus> = {};
      for (const id of r.prs.ids) {
        const pr = r.prs.progress.get(id)!;
        progress[id] = { match: pr.match, next: pr.next, state: pr.state, recentActive: pr.recentActive, learner: pr.isLearner };
      }
      s.progress = progress;
    }
    return s;
  }

  /** Cheap accessors for per-step checks (status() builds objects). */
  get term(): number {
    return this.raft.term;
  }
  get role(): Role {
    return this.raft.role();
  }
  get leader(): string | null {
    return this.raft.lead;
  }
  get id(): string {
    return this.raft.id;
  }

  /** The in-memory log, read-only. */
  log(): LogView {
    if (this.logView === undefined) {
      const log = this.raft.log;
      this.logView = {
        firstIndex: () => log.firstIndex(),
        lastIndex: () => log.lastIndex(),
        term: (i) => log.term(i),
        entry: (i) => (i >= log.firstIndex() && i <= log.lastIndex() ? log.slice(i, i + 1, Infinity)[0] : undefined),
        unstableEntries: () => log.unstable.entries,
        get committed() {
          return log.committed;
        },
        get applied() {
          return log.applied;
        },
      };
    }
    return this.logView;
  }
}

function sameSoft(a: SoftState, b: SoftState): boolean {
  return a.leader === b.leader && a.role === b.role;
}

function sameHard(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}
