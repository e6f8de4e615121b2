import { Changer, ConfChangeError, decodeConfChange, encodeConfChange, leavesJoint, restoreConf } from './confchange.js';
import { RaftLog } from './log.js';
import type { Progress } from './progress.js';
import { ReadOnly } from './read-only.js';
import type { Storage } from './storage.js';
import { isJoint, ProgressTracker, type TrackerConfig } from './tracker.js';
import {
  isEmptyHardState,
  message,
  RaftError,
  type Bugs,
  type ConfChange,
  type Config,
  type Entry,
  type EntryType,
  type HardState,
  type Message,
  type ReadState,
  type Role,
  type Snapshot,
  type SoftState,
} from './types.js';

// The Raft state machine, after etcd's raft.go. Synchronous and free of I/O: ticks, messages and
// requests go in; the effects collect in `msgs`, `readStates` and the log, for RawNode to hand to
// the driver as a Ready. step() first checks the message's term, then handles what every role
// handles the same way (votes), then calls the handler of the current role.
//
// Snapshots are sent whole in one MsgSnap. Chunking belongs to the transport (one QUIC stream per
// snapshot, written in pieces and reassembled before step()), which reports the outcome with
// reportSnapshot(); the core never holds a half-received snapshot, and a lost stream simply sends
// the follower back to probing. Why there and not here: see ../snapshot-transfer.ts.

export type StateType = 'follower' | 'precandidate' | 'candidate' | 'leader';

type CampaignType = 'preElection' | 'election' | 'transfer';

/** The context of a MsgVote sent on MsgTimeoutNow: voters skip their leader lease for it. */
const CAMPAIGN_TRANSFER = 'transfer';

/** Election timeouts after which an unreported snapshot is assumed lost (see expireSnapshots). */
const SNAPSHOT_TIMEOUT = 3;

interface PendingRead {
  from: string;
  ctx: string;
}

export class Raft {
  readonly id: string;
  term = 0;
  vote: string | null = null;
  lead: string | null = null;
  state: StateType = 'follower';
  /** This node is a learner in its current configuration. */
  isLearner = false;
  readonly log: RaftLog;
  readonly prs: ProgressTracker;
  /** Messages to send once the Ready that carries them is persisted (a leader's: while it is). */
  msgs: Message[] = [];
  readStates: ReadState[] = [];
  leadTransferee: string | null = null;
  /**
   * Index of the last conf change the leader appended (at election: the last index, since the
   * log may hold one). No new change is proposed until this is applied.
   */
  pendingConfIndex = 0;

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  private readOnly = new ReadOnly();
  /** ReadIndex requests that arrived before this leader committed an entry of its term. */
  private pendingReads: PendingRead[] = [];
  /** Proposals were appended; send them at the next flush, batched into few MsgApps. */
  private appendPending = false;
  /**
   * This node lost its vote: it applied the change, or a candidate that has not applied it yet
   * asked it for a vote. Until the other voters know the change is committed they may still count
   * on its vote, which it refuses if its log is ahead of theirs, and then nobody can win. So it
   * may still campaign (always through a pre-vote, so it cannot disrupt a cluster that has moved
   * on); as leader it only spreads the log and the commit index, and hands over.
   */
  private handingOver = false;

  private readonly electionTimeout: number;
  private readonly heartbeatTimeout: number;
  private readonly checkQuorum: boolean;
  private readonly preVote: boolean;
  private readonly maxMsgSize: number;
  private readonly rand: () => number;
  private readonly bugs: Bugs;

  constructor(cfg: Config, storage: Storage) {
    validateConfig(cfg);
    this.id = cfg.id;
    this.electionTimeout = cfg.electionTick;
    this.heartbeatTimeout = cfg.heartbeatTick;
    this.checkQuorum = cfg.checkQuorum;
    this.preVote = cfg.preVote;
    this.maxMsgSize = cfg.maxSizePerMsg;
    this.rand = cfg.rand;
    this.bugs = cfg.bugs ?? {};
    this.log = new RaftLog(storage, cfg.maxCommittedSizePerReady ?? Infinity);
    this.prs = new ProgressTracker(cfg.maxInflight);
    const { hardState, confState } = storage.initialState();
    const { config, progress } = restoreConf(confState, this.log.lastIndex(), cfg.maxInflight);
    this.switchToConfig(config, progress);
    if (!isEmptyHardState(hardState)) this.loadState(hardState);
    if (cfg.applied !== undefined && cfg.applied > this.log.applied) this.log.appliedTo(cfg.applied);
    this.becomeFollower(this.term, null);
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  softState(): SoftState {
    return { leader: this.lead, role: this.role() };
  }

  role(): Role {
    return this.state === 'follower' && this.isLearner ? 'learner' : this.state;
  }

  // ---- ticks -------------------------------------------------------------------------------

  tick(): void {
    if (this.state === 'leader') this.tickHeartbeat();
    else this.tickElection();
  }

  /** Followers and candidates: campaign when no leader was heard from for a random timeout. */
  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup(this.preVote || this.handingOver ? 'preElection' : 'election');
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0;
      if (this.checkQuorum) {
        // Step down if a quorum has not been heard from in a whole election timeout: a partitioned
        // leader must not keep serving (ReadIndex, proposals that can never commit).
        if (!this.prs.quorumActive()) {
          this.becomeFollower(this.term, null);
          return;
        }
        for (const [id, pr] of this.prs.progress) if (id !== this.id) pr.recentActive = false;
      }
      // A transfer that has not finished within an election timeout is abandoned (a removed
      // leader tries again, possibly with another target).
      this.leadTransferee = null;
      if (this.isRemovedLeader()) this.handOff();
      this.expireSnapshots();
    }
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat(this.readOnly.lastPendingRequestCtx());
    }
  }

  // ---- role changes ------------------------------------------------------------------------

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = null;
    }
    this.lead = null;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.electionTimeout + Math.floor(this.rand() * this.electionTimeout);
    this.leadTransferee = null;
    this.prs.resetVotes();
    const last = this.log.lastIndex();
    for (const [id, pr] of this.prs.progress) pr.reset(id === this.id ? last : 0, last + 1, id === this.id);
    this.pendingConfIndex = 0;
    this.readOnly = new ReadOnly();
    this.pendingReads = [];
    this.appendPending = false;
  }

  becomeFollower(term: number, lead: string | null): void {
    this.reset(term);
    this.lead = lead;
    this.state = 'follower';
  }

  /** A pre-candidate asks for votes for term+1 without changing its term or vote. */
  private becomePreCandidate(): void {
    if (this.state === 'leader') throw new Error('invalid transition [leader -> precandidate]');
    this.prs.resetVotes();
    this.lead = null;
    this.state = 'precandidate';
  }

  private becomeCandidate(): void {
    if (this.state === 'leader') throw new Error('invalid transition [leader -> candidate]');
    this.reset(this.term + 1);
    this.vote = this.id;
    this.state = 'candidate';
  }

  private becomeLeader(): void {
    if (this.state === 'follower') throw new Error('invalid transition [follower -> leader]');
    this.reset(this.term);
    this.lead = this.id;
    this.state = 'leader';
    const self = this.prs.progress.get(this.id);
    if (self) {
      self.becomeReplicate();
      self.recentActive = true;
    }
    // The log may hold a conf change of an earlier term; no new one until everything up to here
    // is applied (which needs the empty entry below to commit).
    this.pendingConfIndex = this.log.lastIndex();
    // An entry of the new term, so that earlier entries can be committed (5.4.2) and reads served.
    this.appendEntries([{ type: 'normal', data: new Uint8Array(0) }]);
    if (this.isRemovedLeader()) this.handOff();
  }

  /**
   * May this node become leader: a voter in its configuration (or one handing over, see
   * handingOver), not waiting for a snapshot.
   */
  promotable(): boolean {
    if (this.log.hasPendingSnapshot()) return false;
    return this.prs.isVoter(this.id) || (this.handingOver && this.prs.config.voters[0].size > 0);
  }

  /** Starts an election now (RawNode.campaign). */
  campaignNow(): void {
    this.hup(this.preVote || this.handingOver ? 'preElection' : 'election');
  }

  private hup(t: CampaignType): void {
    if (this.state === 'leader' || !this.promotable()) return;
    // Votes must be counted in the newest configuration known to be committed.
    if (this.hasUnappliedConfChanges()) return;
    this.campaign(t);
  }

  private hasUnappliedConfChanges(): boolean {
    if (this.log.applied >= this.log.committed) return false;
    const lo = Math.max(this.log.applied + 1, this.log.firstIndex());
    for (const e of this.log.slice(lo, this.log.committed + 1, Infinity)) if (e.type === 'conf') return true;
    return false;
  }

  private campaign(t: CampaignType): void {
    let term: number;
    let type: 'MsgPreVote' | 'MsgVote';
    if (t === 'preElection') {
      this.becomePreCandidate();
      type = 'MsgPreVote';
      term = this.term + 1; // the term we would campaign for
    } else {
      this.becomeCandidate();
      type = 'MsgVote';
      term = this.term;
    }
    // The self-vote counts before it is persisted: it is persisted (with the new term) in the same
    // Ready whose messages ask the others, and a single voter's own win is only acted on there too.
    if (this.poll(this.id, true) === 'won') {
      if (t === 'preElection') this.campaign('election');
      else this.becomeLeader();
      return;
    }
    const index = this.log.lastIndex();
    const logTerm = this.log.lastTerm();
    for (const id of this.prs.voterIds()) {
      if (id === this.id) continue;
      this.send({ type, to: id, term, index, logTerm, context: t === 'transfer' ? CAMPAIGN_TRANSFER : '' });
    }
  }

  private poll(id: string, granted: boolean): 'won' | 'lost' | 'pending' {
    this.prs.recordVote(id, granted);
    return this.prs.tallyVotes().result;
  }

  // ---- messages ----------------------------------------------------------------------------

  step(m: Message): void {
    if (m.term > this.term) {
      if (m.type === 'MsgVote' || m.type === 'MsgPreVote') {
        // Leader lease: having heard from a live leader within the minimum election timeout, ignore
        // the candidate (and keep our term), unless the leader itself asked for this election.
        const force = m.context === CAMPAIGN_TRANSFER;
        const inLease = this.checkQuorum && this.lead !== null && this.electionElapsed < this.electionTimeout;
        if (!force && inLease) return;
      }
      if (m.type === 'MsgPreVote') {
        // A pre-vote never changes our term.
      } else if (m.type === 'MsgPreVoteResp' && !m.reject) {
        // Granted pre-votes carry the term we campaign for; the term moves when we win.
      } else if (m.type === 'MsgApp' || m.type === 'MsgHeartbeat' || m.type === 'MsgSnap') {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, null);
      }
    } else if (m.term < this.term) {
      if (m.type === 'MsgHeartbeat' || m.type === 'MsgApp') {
        // A leader of an older term: answer with our term so that it steps down. It may have been
        // cut off, or be a removed leader that handed over and is sent nothing any more; or our
        // own term rose while we were cut off, and this is how the others learn it.
        this.send({ type: 'MsgAppResp', to: m.from });
      } else if (m.type === 'MsgPreVote' || m.type === 'MsgVote') {
        // Reject explicitly (Raft paper 5.1), so that a candidate of an old term learns the term
        // and can campaign again in it. Ignoring it can leave a candidate that needs our vote
        // forever behind our term when we never send it anything else (we are not its leader, and
        // it may not even be a voter in our configuration).
        this.send({ type: m.type === 'MsgVote' ? 'MsgVoteResp' : 'MsgPreVoteResp', to: m.from, term: this.term, reject: true });
      }
      return;
    }

    if (m.type === 'MsgVote' || m.type === 'MsgPreVote') {
      this.handleVote(m);
      return;
    }
    switch (this.state) {
      case 'leader':
        this.stepLeader(m);
        break;
      case 'candidate':
      case 'precandidate':
        this.stepCandidate(m);
        break;
      case 'follower':
        this.stepFollower(m);
        break;
    }
  }

  private handleVote(m: Message): void {
    // Asked for a vote although not a voter here: the candidate still counts on us (it has not
    // applied our removal yet). We may be the one holding the log it needs; see handingOver.
    if (!this.prs.isVoter(this.id) && this.prs.config.voters[0].size > 0) this.handingOver = true;
    // We can vote if we already voted for this candidate, or have not voted and know no leader in
    // this term, or it is a pre-vote for a later term.
    const canVote =
      this.vote === m.from ||
      (this.vote === null && this.lead === null) ||
      (m.type === 'MsgPreVote' && m.term > this.term);
    const respType = m.type === 'MsgVote' ? 'MsgVoteResp' : 'MsgPreVoteResp';
    const upToDate = this.bugs.voteWithoutLogCheck === true || this.log.isUpToDate(m.index, m.logTerm);
    if (canVote && upToDate) {
      // A granted pre-vote carries the candidate's term, so it does not look stale to it.
      this.send({ type: respType, to: m.from, term: m.term });
      if (m.type === 'MsgVote') {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send({ type: respType, to: m.from, term: this.term, reject: true });
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case 'MsgApp':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppendEntries(m);
        break;
      case 'MsgHeartbeat':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        break;
      case 'MsgSnap':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        break;
      case 'MsgTransferLeader':
      case 'MsgReadIndex':
        // Not ours to answer: pass it to the leader, keeping the original sender.
        if (this.lead !== null) this.msgs.push({ ...m, to: this.lead });
        break;
      case 'MsgReadIndexResp':
        this.readStates.push({ index: m.index, ctx: m.context });
        break;
      case 'MsgTimeoutNow':
        // The leader hands over: campaign now, without a pre-vote (we know the leader is alive and
        // wants us), and past the other voters' leases.
        this.hup('transfer');
        break;
      default:
        break;
    }
  }

  private stepCandidate(m: Message): void {
    const myVoteResp = this.state === 'precandidate' ? 'MsgPreVoteResp' : 'MsgVoteResp';
    switch (m.type) {
      case 'MsgApp':
        this.becomeFollower(m.term, m.from);
        this.handleAppendEntries(m);
        break;
      case 'MsgHeartbeat':
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        break;
      case 'MsgSnap':
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        break;
      case 'MsgReadIndexResp':
        // Confirmed by the leader of this term before we campaigned; still a valid answer.
        this.readStates.push({ index: m.index, ctx: m.context });
        break;
      case myVoteResp: {
        const res = this.poll(m.from, !m.reject);
        if (res === 'won') {
          if (this.state === 'precandidate') {
            this.campaign('election');
          } else {
            this.becomeLeader();
            this.bcastAppend();
          }
        } else if (res === 'lost') {
          // A pre-vote or vote rejected by a quorum: back to follower, same term.
          this.becomeFollower(this.term, null);
        }
        break;
      }
      default:
        break;
    }
  }

  private stepLeader(m: Message): void {
    switch (m.type) {
      case 'MsgReadIndex':
        this.handleReadIndex(m.from, m.context);
        return;
      case 'MsgTransferLeader':
        this.handleTransferLeader(m.context);
        return;
      default:
        break;
    }
    const pr = this.prs.progress.get(m.from);
    if (pr === undefined) return; // not (or no longer) a member
    switch (m.type) {
      case 'MsgAppResp':
        this.handleAppendResponse(m, pr);
        break;
      case 'MsgHeartbeatResp':
        this.handleHeartbeatResponse(m, pr);
        break;
      default:
        break;
    }
  }

  // ---- follower side of replication ---------------------------------------------------------

  private handleAppendEntries(m: Message): void {
    if (m.index < this.log.committed) {
      // Everything up to our commit index is known to match; tell the leader where we are.
      this.send({ type: 'MsgAppResp', to: m.from, index: this.log.committed });
      return;
    }
    const last = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (last !== undefined) {
      this.send({ type: 'MsgAppResp', to: m.from, index: last });
      return;
    }
    // Our entry at m.index is missing or has another term. Hint where the logs may still match:
    // the last index <= m.index whose term is <= m.logTerm (no later index can match), so the
    // leader skips a whole term of mismatching entries per round trip instead of one entry.
    const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    this.send({ type: 'MsgAppResp', to: m.from, index: m.index, reject: true, rejectHint: hint.index, logTerm: hint.term });
  }

  private handleHeartbeat(m: Message): void {
    // The leader sends min(our match, its commit), so this never points past our log.
    this.log.commitTo(m.commit);
    this.send({ type: 'MsgHeartbeatResp', to: m.from, context: m.context });
  }

  private handleSnapshot(m: Message): void {
    const s = m.snapshot;
    if (s === undefined) return;
    if (this.restore(s)) {
      this.send({ type: 'MsgAppResp', to: m.from, index: this.log.lastIndex() });
    } else {
      this.send({ type: 'MsgAppResp', to: m.from, index: this.log.committed });
    }
  }

  /** Installs a snapshot from the leader, unless our log already covers it. */
  private restore(s: Snapshot): boolean {
    if (s.meta.index <= this.log.committed) return false;
    if (this.state !== 'follower') throw new Error(`restoring a snapshot as ${this.state}`);
    if (this.log.matchTerm(s.meta.index, s.meta.term)) {
      // We have the snapshot's last entry: just learn that everything up to it is committed. The
      // conf changes in between are applied from the log as usual.
      this.log.commitTo(s.meta.index);
      return false;
    }
    this.log.restore(s);
    // The snapshot's configuration replaces ours. We may not be in it (we were added after it was
    // taken); then we are a non-member until the entry that adds us is applied.
    const { config, progress } = restoreConf(s.meta.conf, this.log.lastIndex(), this.prs.maxInflight);
    this.switchToConfig(config, progress);
    return true;
  }

  // ---- leader side of replication -----------------------------------------------------------

  /** Appends entries of the current term to the leader's log and counts its own acknowledgement. */
  private appendEntries(ents: { type: EntryType; data: Uint8Array }[]): void {
    let index = this.log.lastIndex();
    const entries: Entry[] = ents.map((e) => ({ term: this.term, index: ++index, type: e.type, data: e.data }));
    this.log.append(entries);
    // The leader counts itself before its write is durable (it may send the entries while it
    // writes them): the driver handles one Ready at a time, so they are durable here before any
    // later Ready, the first that can tell anyone, or apply, that they are committed.
    this.prs.progress.get(this.id)?.maybeUpdate(this.log.lastIndex());
    this.maybeCommit();
  }

  /** Commit the highest index a quorum holds, if it is of the current term. */
  private maybeCommit(): boolean {
    const mci = this.prs.committed();
    if (!Number.isFinite(mci)) return false;
    return this.log.maybeCommit(mci, this.term, this.bugs.commitOldTermByCount === true);
  }

  /** Sends proposals appended since the last flush. RawNode calls this before collecting a Ready. */
  flushAppends(): void {
    if (!this.appendPending) return;
    this.appendPending = false;
    if (this.state !== 'leader') return;
    for (const id of this.prs.ids) {
      // As many messages as the follower's window and maxSizePerMsg allow.
      if (id !== this.id) while (this.maybeSendAppend(id, false));
    }
  }

  private bcastAppend(): void {
    this.appendPending = false;
    for (const id of this.prs.ids) if (id !== this.id) this.maybeSendAppend(id, true);
  }

  /**
   * Sends the next MsgApp to `to` if its progress allows (or a snapshot if it needs compacted
   * entries). With sendIfEmpty, an empty MsgApp still goes out (to carry the commit index).
   */
  private maybeSendAppend(to: string, sendIfEmpty: boolean): boolean {
    const pr = this.prs.progress.get(to);
    if (pr === undefined || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    const ents = prevTerm === undefined ? undefined : this.log.entries(pr.next, this.maxMsgSize);
    if (prevTerm === undefined || ents === undefined) return this.sendSnapshot(to, pr);
    if (ents.length === 0 && !sendIfEmpty) return false;
    this.send({ type: 'MsgApp', to, index: prevIndex, logTerm: prevTerm, entries: ents, commit: this.log.committed });
    pr.sentEntries(ents.length, prevIndex + ents.length);
    return true;
  }

  private sendSnapshot(to: string, pr: Progress): boolean {
    // A follower we have not heard from lately is probably down; do not ship it a whole state.
    if (!pr.recentActive) return false;
    const snapshot = this.log.snapshot();
    if (snapshot.meta.index === 0) throw new Error('need a snapshot but storage has none');
    pr.becomeSnapshot(snapshot.meta.index);
    this.send({ type: 'MsgSnap', to, snapshot });
    return true;
  }

  private sendHeartbeat(to: string, ctx: string): void {
    const pr = this.prs.progress.get(to);
    // Never point a follower's commit past what we know it holds.
    const commit = Math.min(pr?.match ?? 0, this.log.committed);
    this.send({ type: 'MsgHeartbeat', to, commit, context: ctx });
  }

  private bcastHeartbeat(ctx: string): void {
    for (const id of this.prs.ids) if (id !== this.id) this.sendHeartbeat(id, ctx);
  }

  private handleAppendResponse(m: Message, pr: Progress): void {
    pr.recentActive = true;
    if (m.reject) {
      // Fast backtracking: the follower's hint says its log may match up to rejectHint, where its
      // term is m.logTerm; skip our entries of later terms as well.
      let next = m.rejectHint;
      if (m.logTerm > 0) next = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
      if (pr.maybeDecrTo(m.index, next)) {
        if (pr.state === 'replicate') pr.becomeProbe();
        this.maybeSendAppend(m.from, true);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(m.index)) return;
    if (pr.state === 'probe') {
      pr.becomeReplicate();
    } else if (pr.state === 'snapshot' && pr.match + 1 >= this.log.firstIndex()) {
      // The follower caught up (by the snapshot or otherwise) to where our log can serve it.
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === 'replicate') {
      pr.inflights.freeLE(m.index);
    }
    if (this.maybeCommit()) {
      this.releasePendingReads();
      this.bcastAppend();
    } else if (wasPaused) {
      this.maybeSendAppend(m.from, true);
    }
    // The window may have room for several (size-limited) messages now.
    while (this.maybeSendAppend(m.from, false)) {
      // keep filling
    }
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) {
      this.send({ type: 'MsgTimeoutNow', to: m.from });
    }
  }

  private handleHeartbeatResponse(m: Message, pr: Progress): void {
    pr.recentActive = true;
    pr.probeSent = false;
    // A lost MsgApp would otherwise hold a full window forever: let one more through.
    if (pr.state === 'replicate' && pr.inflights.full()) pr.inflights.freeFirstOne();
    if (pr.match < this.log.lastIndex()) this.maybeSendAppend(m.from, true);

    if (m.context === '') return;
    const acks = this.readOnly.recvAck(m.from, m.context);
    if (acks === undefined || this.prs.voteResult(acks) !== 'won') return;
    for (const rs of this.readOnly.advance(m.context)) this.answerRead(rs.from, rs.index, rs.ctx);
  }

  // ---- requests ----------------------------------------------------------------------------

  /** Appends a proposal (leader only). Sent at the next flush, batched with its neighbours. */
  propose(data: Uint8Array): void {
    this.checkCanPropose();
    this.appendEntries([{ type: 'normal', data }]);
    this.appendPending = true;
  }

  proposeConfChange(cc: ConfChange): void {
    this.checkCanPropose();
    if (this.pendingConfIndex > this.log.applied) {
      throw new RaftError('conf-change-pending', `a conf change (up to index ${this.pendingConfIndex}) is not applied yet`, this.id);
    }
    if (this.log.term(this.log.committed) !== this.term) {
      // Redundant with pendingConfIndex (set to the last index at election), but this is the rule
      // that makes changes safe, so it is spelled out: commit an entry of our term first.
      throw new RaftError('conf-change-pending', 'the leader has not committed an entry of its term yet', this.id);
    }
    const joint = isJoint(this.prs.config);
    if (joint && !leavesJoint(cc)) {
      throw new RaftError('invalid-conf-change', 'the configuration is joint: only leaving it is possible', this.id);
    }
    if (!joint && leavesJoint(cc)) {
      throw new RaftError('invalid-conf-change', 'the configuration is not joint: nothing to leave', this.id);
    }
    // Validate against the configuration the change will be applied to (no other is pending).
    try {
      new Changer(this.prs.config, this.prs.progress, this.log.lastIndex(), this.prs.maxInflight).apply(cc);
    } catch (err) {
      if (err instanceof ConfChangeError) throw new RaftError('invalid-conf-change', err.message, this.id);
      throw err;
    }
    this.appendEntries([{ type: 'conf', data: encodeConfChange(cc) }]);
    this.pendingConfIndex = this.log.lastIndex();
    this.appendPending = true;
  }

  private checkCanPropose(): void {
    if (this.state !== 'leader') throw new RaftError('not-leader', `${this.id} is not the leader`, this.lead);
    if (this.isRemovedLeader()) {
      throw new RaftError('removed', `${this.id} was removed from the voters and is handing over`, this.leadTransferee);
    }
    if (this.leadTransferee !== null) {
      throw new RaftError('transferring', `leadership is moving to ${this.leadTransferee}`, this.lead);
    }
  }

  /** A linearizable read: answered through readStates (here or at the follower that asked). */
  readIndex(ctx: string): void {
    if (this.state === 'leader') {
      this.handleReadIndex(this.id, ctx);
    } else if (this.lead !== null) {
      this.send({ type: 'MsgReadIndex', to: this.lead, context: ctx });
    } else {
      throw new RaftError('not-leader', 'no leader known for a read', null);
    }
  }

  private handleReadIndex(from: string, ctx: string): void {
    if (this.prs.isSingleton()) {
      this.answerRead(from, this.log.committed, ctx);
      return;
    }
    // Our commit index is only known to be the cluster's once we committed an entry of our term
    // (a new leader may not know how far its predecessor committed). Until then, queue.
    if (this.log.term(this.log.committed) !== this.term) {
      this.pendingReads.push({ from, ctx });
      return;
    }
    this.startRead(from, ctx);
  }

  private startRead(from: string, ctx: string): void {
    this.readOnly.addRequest(this.log.committed, from, ctx);
    this.readOnly.recvAck(this.id, ctx);
    this.bcastHeartbeat(ctx);
  }

  private releasePendingReads(): void {
    if (this.pendingReads.length === 0 || this.log.term(this.log.committed) !== this.term) return;
    const reads = this.pendingReads;
    this.pendingReads = [];
    for (const r of reads) this.startRead(r.from, r.ctx);
  }

  private answerRead(from: string, index: number, ctx: string): void {
    if (from === this.id) this.readStates.push({ index, ctx });
    else this.send({ type: 'MsgReadIndexResp', to: from, index, context: ctx });
  }

  /** Hands leadership to `to` once its log is caught up (leader), or asks the leader to. */
  transferLeadership(to: string): void {
    if (this.state === 'leader') this.handleTransferLeader(to);
    else if (this.lead !== null) this.send({ type: 'MsgTransferLeader', to: this.lead, context: to });
    else throw new RaftError('not-leader', 'no leader known to transfer from', null);
  }

  private handleTransferLeader(to: string): void {
    const pr = this.prs.progress.get(to);
    if (pr === undefined || pr.isLearner || !this.prs.isVoter(to) || to === this.id) return;
    if (this.leadTransferee === to) return; // already under way
    // Proposals stop until the transfer completes or an election timeout passes.
    this.electionElapsed = 0;
    this.leadTransferee = to;
    if (pr.match === this.log.lastIndex()) this.send({ type: 'MsgTimeoutNow', to });
    else this.maybeSendAppend(to, true);
  }

  /** The transport delivered (or failed to deliver) the snapshot it was given for `to`. */
  reportSnapshot(to: string, ok: boolean): void {
    const pr = this.prs.progress.get(to);
    if (this.state !== 'leader' || pr === undefined || pr.state !== 'snapshot') return;
    if (!ok) pr.pendingSnapshot = 0; // probe from match, not from the snapshot it never got
    pr.becomeProbe();
    // Wait for the follower's answer (or, after a failure, a heartbeat) before the next probe.
    pr.probeSent = true;
  }

  /**
   * A snapshot nobody reported on (reportSnapshot) and the follower never answered for is assumed
   * lost after SNAPSHOT_TIMEOUT election timeouts: probe again, which sends a new one if needed.
   * A transport that reports does not wait for this; one that does not still recovers.
   */
  private expireSnapshots(): void {
    for (const [id, pr] of this.prs.progress) {
      if (id === this.id || pr.state !== 'snapshot') continue;
      if (++pr.snapshotWait >= SNAPSHOT_TIMEOUT) pr.becomeProbe();
    }
  }

  /** The transport could not reach `to`: stop pipelining to it. */
  reportUnreachable(to: string): void {
    const pr = this.prs.progress.get(to);
    if (this.state === 'leader' && pr !== undefined && pr.state === 'replicate') pr.becomeProbe();
  }

  // ---- configuration ------------------------------------------------------------------------

  /** Applies a committed conf entry (RawNode.advance calls this once the driver applied it). */
  applyConfEntry(data: Uint8Array): void {
    const cc = decodeConfChange(data);
    if (cc === undefined) return; // not ours: every node skips it alike
    let next: ReturnType<Changer['apply']>;
    try {
      next = new Changer(this.prs.config, this.prs.progress, this.log.lastIndex(), this.prs.maxInflight).apply(cc);
    } catch (err) {
      if (err instanceof ConfChangeError) return; // invalid here: every node skips it alike
      throw err;
    }
    const wasVoter = this.prs.isVoter(this.id);
    this.switchToConfig(next.config, next.progress);
    const isVoter = this.prs.isVoter(this.id);
    if (wasVoter && !isVoter) this.handingOver = true;
    else if (isVoter) this.handingOver = false;
  }

  private switchToConfig(config: TrackerConfig, progress: ReadonlyMap<string, Progress>): void {
    this.prs.setConfig(config, progress);
    const self = progress.get(this.id);
    this.isLearner = self !== undefined && self.isLearner;
    if (this.state !== 'leader') return;
    // The quorum changed: maybe more is committed, and new members need their first MsgApp.
    if (this.maybeCommit()) this.bcastAppend();
    else for (const id of this.prs.ids) if (id !== this.id) this.maybeSendAppend(id, false);
    if (this.leadTransferee !== null && !this.prs.isVoter(this.leadTransferee)) this.leadTransferee = null;
    if (this.isRemovedLeader() && this.leadTransferee === null) this.handOff();
  }

  /**
   * A leader that is no longer a voter (removed, or demoted to learner) does not simply step down:
   * the remaining voters may not know yet that the change is committed, and while they still use
   * the old (or joint) configuration they may need this node's vote, which it would refuse if its
   * log is ahead of theirs. So it keeps leading (replicating, and carrying the commit index to
   * them) but refuses proposals, and transfers leadership to the most up-to-date voter of the new
   * configuration, retrying every election timeout until a successor takes over.
   */
  private isRemovedLeader(): boolean {
    if (this.state !== 'leader') return false;
    const self = this.prs.progress.get(this.id);
    return self === undefined || self.isLearner;
  }

  private handOff(): void {
    let best: string | undefined;
    let bestMatch = -1;
    for (const id of this.prs.voterIds()) {
      const pr = this.prs.progress.get(id);
      if (id !== this.id && pr !== undefined && pr.match > bestMatch) {
        best = id;
        bestMatch = pr.match;
      }
    }
    if (best !== undefined) this.handleTransferLeader(best);
  }

  /** Called by RawNode.advance after applying: a leader leaves an auto-leave joint config itself. */
  maybeAutoLeave(): void {
    const c = this.prs.config;
    if (this.state !== 'leader' || !c.autoLeave || !isJoint(c) || this.log.applied < this.pendingConfIndex) return;
    if (this.leadTransferee !== null) return; // retried after the transfer ends
    this.appendEntries([{ type: 'conf', data: encodeConfChange({ changes: [] }) }]);
    this.pendingConfIndex = this.log.lastIndex();
    this.appendPending = true;
  }

  // ---- helpers -----------------------------------------------------------------------------

  private loadState(hs: HardState): void {
    if (hs.commit < this.log.committed || hs.commit > this.log.lastIndex()) {
      throw new Error(`persisted commit ${hs.commit} is out of range [${this.log.committed}, ${this.log.lastIndex()}]`);
    }
    this.log.committed = hs.commit;
    this.term = hs.term;
    this.vote = hs.vote;
  }

  private send(init: Partial<Message> & Pick<Message, 'type' | 'to'>): void {
    this.msgs.push(message({ from: this.id, term: this.term, ...init }));
  }
}

function validateConfig(c: Config): void {
  if (typeof c.id !== 'string' || c.id === '') throw new RangeError('config.id must be a non-empty string');
  if (!Number.isSafeInteger(c.heartbeatTick) || c.heartbeatTick < 1) throw new RangeError('heartbeatTick must be >= 1');
  if (!Number.isSafeInteger(c.electionTick) || c.electionTick <= c.heartbeatTick) {
    throw new RangeError('electionTick must be an integer greater than heartbeatTick');
  }
  if (!Number.isSafeInteger(c.maxInflight) || c.maxInflight < 1) throw new RangeError('maxInflight must be >= 1');
  if (!(c.maxSizePerMsg > 0)) throw new RangeError('maxSizePerMsg must be > 0');
  if (typeof c.rand !== 'function') throw new RangeError('rand must be a function');
}
