// The data the Raft core exchanges with its driver: log entries, the durable state, snapshots,
// messages and the Ready batch. Plain objects, so a transport or a WAL can encode them as it likes.

export type EntryType = 'normal' | 'conf';

/** A log entry. Entries are immutable once created: the core and the driver share them. */
export interface Entry {
  readonly term: number;
  readonly index: number;
  /** 'conf' entries carry an encoded ConfChange (see confchange.ts); the core applies them. */
  readonly type: EntryType;
  readonly data: Uint8Array;
}

/** What must be on disk before any message that depends on it leaves the node. */
export interface HardState {
  term: number;
  vote: string | null;
  commit: number;
}

/**
 * A membership configuration. In a joint configuration (see confchange.ts) `votersOutgoing` holds
 * the old voters; `learnersNext` are outgoing voters that become learners when the joint
 * configuration is left.
 */
export interface ConfState {
  voters: string[];
  learners: string[];
  votersOutgoing?: string[];
  learnersNext?: string[];
  /** Joint configurations only: the leader leaves it on its own once it is applied. */
  autoLeave?: boolean;
}

export interface SnapshotMeta {
  /** The last entry the snapshot covers, and its term. */
  index: number;
  term: number;
  /** The configuration as of `index`. */
  conf: ConfState;
}

export interface Snapshot {
  meta: SnapshotMeta;
  data: Uint8Array;
}

/**
 * Every message type, the one list: the type, RawNode's check of what a peer may send, and the
 * wire codes all come from it. A type's wire code (codec.ts) is its position here, so a new type
 * goes at the end, and none is removed or moved.
 */
export const MESSAGE_TYPES = [
  'MsgApp',
  'MsgAppResp',
  'MsgVote',
  'MsgVoteResp',
  'MsgPreVote',
  'MsgPreVoteResp',
  'MsgHeartbeat',
  'MsgHeartbeatResp',
  'MsgSnap',
  'MsgTimeoutNow',
  'MsgReadIndex',
  'MsgReadIndexResp',
  'MsgTransferLeader',
] as const;

export type MessageType = (typeof MESSAGE_TYPES)[number];

/**
 * One flat shape for every message, as in etcd's raftpb.Message, so that a transport encodes a
 * fixed header plus entries. Fields a type does not use are 0, false, '' or [].
 *
 * - MsgApp: `index`/`logTerm` identify the entry before `entries`; `commit` is the leader's commit.
 * - MsgAppResp: `index` is the follower's last matching index, or on `reject` the rejected
 *   `index` with a hint (`rejectHint`, `logTerm`) of where the logs may diverge.
 * - MsgVote/MsgPreVote: `index`/`logTerm` describe the candidate's last entry; `context` is
 *   'transfer' for a leadership transfer (which bypasses the leader lease).
 * - MsgHeartbeat(Resp), MsgReadIndex(Resp): `context` carries the ReadIndex request id.
 * - MsgSnap: `snapshot` is the whole snapshot. Splitting it into chunks is the transport's job
 *   (a QUIC stream), which reports the outcome with RawNode.reportSnapshot; see raft.ts.
 * - MsgTransferLeader: `context` is the node that should become leader.
 */
export interface Message {
  type: MessageType;
  from: string;
  to: string;
  term: number;
  logTerm: number;
  index: number;
  entries: readonly Entry[];
  commit: number;
  reject: boolean;
  rejectHint: number;
  snapshot?: Snapshot;
  context: string;
}

export type Role = 'leader' | 'follower' | 'candidate' | 'precandidate' | 'learner';

/** Volatile state the driver may want to show or react to; never persisted. */
export interface SoftState {
  leader: string | null;
  role: Role;
}

/** A ReadIndex request is answered: reads made once `applied >= index` are linearizable. */
export interface ReadState {
  index: number;
  ctx: string;
}

/**
 * A batch of work for the driver, in the order it must be done:
 * 1. persist `snapshot`, then `entries` (which may overwrite a suffix of the log), then
 *    `hardState`, as ONE atomic write (a crash keeps all of it or none), fsynced when `mustSync`;
 * 2. send `messages` (a leader may send them while step 1 runs, as in etcd: the next Ready,
 *    the first that can say its entries are committed, comes only after step 4);
 * 3. restore `snapshot` into the state machine, then apply `committedEntries` in order, and
 *    answer `readStates` once the state machine has applied their index;
 * 4. call `advance()`.
 */
export interface Ready {
  softState?: SoftState;
  hardState?: HardState;
  entries: Entry[];
  snapshot?: Snapshot;
  committedEntries: Entry[];
  messages: Message[];
  readStates: ReadState[];
  mustSync: boolean;
}

/** One membership change. 'addNode' also promotes a learner; 'addLearner' also demotes a voter. */
export interface ConfChangeSingle {
  type: 'addNode' | 'addLearner' | 'removeNode';
  node: string;
}

/**
 * A membership change, after etcd's ConfChangeV2. With no `changes` it leaves a joint
 * configuration. `transition`: 'auto' (default) makes a single voter change directly and anything
 * bigger through a joint configuration that is left automatically; 'implicit' always goes through
 * a joint configuration, left automatically; 'explicit' stays joint until an empty ConfChange.
 */
export interface ConfChange {
  transition?: 'auto' | 'implicit' | 'explicit';
  changes: ConfChangeSingle[];
}

/**
 * Known Raft mistakes that the simulator must be able to catch. Test-only: production code leaves
 * this unset, and the core reads nothing else to decide to misbehave.
 */
export interface Bugs {
  /** Commit an entry of an earlier term once a majority holds it (Raft paper, figure 8). */
  commitOldTermByCount?: boolean;
  /** Grant (pre-)votes without checking that the candidate's log is at least as up to date. */
  voteWithoutLogCheck?: boolean;
  /** Leave the vote out of the persisted HardState, so a crash forgets it. */
  voteNotPersisted?: boolean;
}

export interface Config {
  /** This node's id; never empty. */
  id: string;
  /** Followers campaign after a random timeout in [electionTick, 2 * electionTick) ticks. */
  electionTick: number;
  /** The leader sends heartbeats every heartbeatTick ticks; must be < electionTick. */
  heartbeatTick: number;
  /** Campaign with a pre-vote round first, so a node that cannot win does not raise the term. */
  preVote: boolean;
  /**
   * The leader steps down when it has not heard from a quorum within an election timeout, and
   * followers that heard from a leader within that time ignore (pre-)votes (the leader lease).
   */
  checkQuorum: boolean;
  /** Most MsgApps in flight to one follower while replicating. */
  maxInflight: number;
  /** Soft limit on the entry bytes of one MsgApp (always at least one entry). */
  maxSizePerMsg: number;
  /** Soft limit on the entry bytes handed out for applying in one Ready. Default: no limit. */
  maxCommittedSizePerReady?: number;
  /** The state machine already applied up to here (restart with a persisted state machine). */
  applied?: number;
  /** Uniform in [0, 1); the only source of randomness (election timeouts). Seed it in tests. */
  rand: () => number;
  bugs?: Bugs;
}

export type RaftErrorCode =
  | 'not-leader'
  | 'transferring'
  | 'removed'
  | 'conf-change-pending'
  | 'invalid-conf-change';

/** A request the core refused; nothing changed. `leader` is the current leader if known. */
export class RaftError extends Error {
  constructor(
    readonly code: RaftErrorCode,
    message: string,
    readonly leader: string | null = null,
  ) {
    super(message);
    this.name = 'RaftError';
  }
}

export const EMPTY_ENTRIES: readonly Entry[] = Object.freeze([]);

/** A message with every unused field at its zero value. */
export function message(m: Partial<Message> & Pick<Message, 'type' | 'from' | 'to' | 'term'>): Message {
  return {
    logTerm: 0,
    index: 0,
    entries: EMPTY_ENTRIES,
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: '',
    ...m,
  };
}

/** Bytes an entry counts for against size limits: its payload plus a small fixed header. */
export function entrySize(e: Entry): number {
  return e.data.byteLength + 16;
}

export function isEmptyHardState(hs: HardState): boolean {
  return hs.term === 0 && hs.vote === null && hs.commit === 0;
}
