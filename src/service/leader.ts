import { ApiError, type ErrorCode } from '../api/index.js';
import { NodeStoppedError, type ClusterLog } from '../raft/index.js';
import { encodeCommand, type Command, type CommandOutcome, type DesiredStateStore } from '../state/index.js';
import type { ServiceBugs } from './bugs.js';
import type { Call } from './calls.js';

// Where a call is served: on the leader, or passed on to it. Every write and every read that must
// be linearizable goes through `run`, the one place that decides "serve here or forward", and
// through `propose`, the one place that turns the log's answer into the API's errors.

export interface LeaderOptions {
  self: string;
  log: ClusterLog;
  store: DesiredStateStore;
  /** Whom to ask when no leader is known (a worker asks any voter, which forwards again). */
  fallback: () => string | null;
  /** Sends a call to a node over blixard/api/1; throws when the node cannot be reached. */
  send: (nodeId: string, call: Call) => Promise<{ status: number; body: unknown }>;
  /**
   * When a node last answered this node's ping (ms since the epoch; undefined: not known yet).
   * Without it, a call waiting on a leader goes only by what Raft hears.
   */
  heardAt?: (nodeId: string) => number | undefined;
  proposeTimeoutMs?: number;
  readBarrierTimeoutMs?: number;
  bugs?: ServiceBugs;
}

const PROPOSE_TIMEOUT_MS = 15_000;
/** How often a call waiting on the leader looks whether that leader is still the one, and alive. */
const FORWARD_WATCH_MS = 50;
/** How many leaders one call may be passed on to before the client is told to try again. */
const MAX_FORWARDS = 4;
const READ_BARRIER_TIMEOUT_MS = 5_000;
/** A message from the leader this long after a send to it failed shows it alive (heartbeats come every 100 ms). */
const HEARD_AFTER_ERROR_MS = 300;
/** An error's details when the call was applied nowhere (it was never handed to a leader). */
export const NOT_APPLIED = { outcome: 'not-applied' } as const;

export class Leader {
  constructor(private readonly o: LeaderOptions) {}

  /** This node leads a cluster (it has applied the cluster's first entry). */
  get isLeader(): boolean {
    return this.o.log.isLeader && this.o.store.clusterId !== null;
  }

  /**
   * Serves `call` here when this node leads, else passes it on to the leader as it is. A call
   * waiting on a leader that is gone (no contact for an election timeout, or its connection
   * died) is not left to time out: it is sent again to the new leader as soon as one is known
   * (here, if this node became it). Without a leader, a call waits for an election's outcome (at
   * most two election timeouts), then is answered `no-leader` so that the client retries. A node
   * cut off from a quorum of voters waits for nothing: no election it can see will end.
   */
  async run<T>(call: Call, local: () => Promise<T>): Promise<T> {
    // Until the call was handed to a node that did not answer, a refusal here means it was not
    // applied anywhere: the client may send it again, or not, knowing that.
    let handedOff = false;
    const refuse = (message: string) => new ApiError('no-leader', message, handedOff ? undefined : NOT_APPLIED);
    const answer = (status: number, body: unknown): T => {
      try {
        return answerOf(status, body) as T;
      } catch (e) {
        // The node that answered did not apply it; one asked before may have.
        if (handedOff && e instanceof ApiError && (e.details as { outcome?: string } | undefined)?.outcome === NOT_APPLIED.outcome) throw new ApiError(e.code, e.message);
        throw e;
      }
    };
    const { log, self } = this.o;
    let refused = '';
    let retriedBroken = false;
    for (let attempt = 0; attempt < MAX_FORWARDS; attempt++) {
      if (this.isLeader) return local();
      const leader = log.leader ?? this.o.fallback();
      if (!leader) {
        // An election takes about one election timeout: the call waits for its outcome.
        if (!refused && (await this.nextLeader(null, 2 * log.electionTimeoutMs))) continue;
        throw refuse(this.cutOff() ?? (refused || 'no leader is known right now; try again in a moment'));
      }
      if (leader === self) throw refuse('leadership is changing; try again');
      const r = await this.sendWatching(leader, call, log.leader === leader);
      if (r.kind === 'answer') return answer(r.status, r.body);
      handedOff = true;
      // The connection to a leader that is still the leader, and still heard from, broke (it had
      // died idle, or the leader restarted): ask it again at once. A write carries its request
      // id, so one the leader took before is answered, not applied again.
      if (r.kind === 'error' && log.leader === leader && Date.now() - log.lastClusterContact <= log.electionTimeoutMs && !retriedBroken) {
        retriedBroken = true;
        continue;
      }
      const name = this.o.store.node(leader)?.name ?? leader.slice(0, 10);
      if (r.kind === 'unanswered') {
        // Raft still hears the leader, but it answers none of our pings: a one-way fault, our
        // packets do not reach it. Another voter that answers us passes the call on.
        refused = `the leader ${name} has answered none of this node's pings for ${log.electionTimeoutMs} ms`;
        const via = this.relay(leader);
        if (!via) throw refuse(`${refused}, nor has any other voter; try another node`);
        const rr = await this.sendWatching(via, call, false);
        if (rr.kind === 'answer') return answer(rr.status, rr.body);
        throw refuse(`${refused}, and passing the call on through ${this.o.store.node(via)?.name ?? via.slice(0, 10)} failed; try again`);
      }
      refused = r.kind === 'gone' ? `the leader ${name} is gone (no contact for ${log.electionTimeoutMs} ms); try again` : r.kind === 'error' ? `cannot reach the leader ${name}: ${r.message}` : '';
      // The call goes to the next leader as soon as one is known (an election takes about one
      // election timeout); if none comes by then, the client hears it and retries. After a failed
      // send, a leader that Raft still hears from is alive: no election is coming.
      const alive = r.kind === 'error' ? { leader, after: Date.now() + HEARD_AFTER_ERROR_MS } : undefined;
      if (!(await this.nextLeader(leader, 2 * log.electionTimeoutMs, alive))) {
        throw refuse(this.cutOff() ?? (alive && log.leader === leader && log.lastClusterContact > alive.after ? `the leader ${name} is alive, but this node cannot reach it (${r.kind === 'error' ? r.message : ''}); try another node` : refused || 'leadership is changing; try again'));
      }
    }
    throw refuse(refused || `leadership changed ${MAX_FORWARDS} times while the call was passed on; try again`);
  }

  /**
   * Whether a leader other than `old` (or this node's own leadership) is known within `ms`. Gives
   * up early when this node is cut off, or when `alive.leader` is still heard from after `alive.after`.
   */
  private async nextLeader(old: string | null, ms: number, alive?: { leader: string; after: number }): Promise<boolean> {
    const end = Date.now() + ms;
    for (;;) {
      const { leader: now, lastClusterContact } = this.o.log;
      if (now !== null && now !== old) return true;
      if (Date.now() >= end || this.cutOff()) return false;
      if (alive && now === alive.leader && lastClusterContact > alive.after) return false;
      await new Promise((r) => setTimeout(r, FORWARD_WATCH_MS));
    }
  }

  /** Whether `nodeId` has answered none of this node's pings for an election timeout. */
  private silent(nodeId: string): boolean {
    const at = this.o.heardAt?.(nodeId);
    return at !== undefined && Date.now() - at > this.o.log.electionTimeoutMs;
  }

  /**
   * Why this node is cut off from the cluster, when fewer than a quorum of voters (itself
   * included) answered its pings within an election timeout; else null. A voter not pinged yet
   * counts as heard: only silence that was seen decides.
   */
  private cutOff(): string | null {
    if (!this.o.heardAt) return null;
    const { voters } = this.o.log.membership;
    const silent = voters.filter((v) => v !== this.o.self && this.silent(v));
    if (voters.length === 0 || voters.length - silent.length >= Math.floor(voters.length / 2) + 1) return null;
    return `this node is cut off from the cluster: ${silent.length} of ${voters.length} voters have answered none of its pings for ${this.o.log.electionTimeoutMs} ms; try another node`;
  }

  /** Another voter that answers this node's pings, to pass a call on to the leader through. */
  private relay(leader: string): string | null {
    const { voters } = this.o.log.membership;
    return voters.find((v) => v !== leader && v !== this.o.self && this.o.heardAt?.(v) !== undefined && !this.silent(v)) ?? null;
  }

  /**
   * Sends a call to `leader`, and stops waiting when the log says another leader is known, or (for
   * the leader the log names, not a voter asked for want of one) that this one has gone silent:
   * to Raft, or to this node's pings.
   */
  private sendWatching(leader: string, call: Call, named: boolean): Promise<{ kind: 'answer'; status: number; body: unknown } | { kind: 'moved' } | { kind: 'gone' } | { kind: 'unanswered' } | { kind: 'error'; message: string }> {
    const { log } = this.o;
    return new Promise((resolve) => {
      const watch = setInterval(() => {
        const now = log.leader;
        if (now !== null && now !== leader) return done({ kind: 'moved' });
        if (named && (now === null || Date.now() - log.lastClusterContact > log.electionTimeoutMs)) return done({ kind: 'gone' });
        if (named && this.silent(leader)) done({ kind: 'unanswered' });
      }, FORWARD_WATCH_MS);
      const done = (r: Parameters<typeof resolve>[0]) => {
        clearInterval(watch);
        resolve(r);
      };
      this.o.send(leader, call).then(
        (res) => done({ kind: 'answer', status: res.status, body: res.body }),
        (e: unknown) => done({ kind: 'error', message: (e as Error).message }),
      );
    });
  }

  /** Commits a command and answers with the state machine's outcome. */
  async propose(cmd: Command): Promise<CommandOutcome> {
    return (await this.commit(cmd)).outcome;
  }

  /**
   * Commits a command; a leader that lost its quorum keeps proposals waiting, so this is bounded.
   * `index` is where this entry went: an outcome from an earlier index answers a request retried.
   */
  async commit(cmd: Command): Promise<{ index: number; outcome: CommandOutcome }> {
    const ms = this.o.proposeTimeoutMs ?? PROPOSE_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ApiError('no-leader', `not committed within ${ms / 1000} s: the cluster may have lost its quorum (the change may still be applied later)`)), ms);
    });
    // A leader that lost its quorum steps down, and its entry may or may not be committed by the
    // next leader; cut off, this node will not learn which for as long as the cut lasts.
    let watch: NodeJS.Timeout | undefined;
    const cut = new Promise<never>((_, reject) => {
      watch = setInterval(() => {
        const why = this.o.log.isLeader ? null : this.cutOff();
        if (why) reject(new ApiError('no-leader', `${why}; this write may still be applied by the next leader`, { outcome: 'unknown' }));
      }, FORWARD_WATCH_MS);
    });
    try {
      const r = await Promise.race([this.o.log.propose(encodeCommand(cmd)), timeout, cut]);
      return { index: r.index, outcome: r.result as CommandOutcome };
    } catch (e) {
      throw logError(e, (m) => m);
    } finally {
      clearTimeout(timer);
      clearInterval(watch);
    }
  }

  /**
   * Reads go to the leader (SPEC section 1, step 8) and are linearizable, as etcd's are by default:
   * the leader first confirms with a quorum that it still leads (ReadIndex), so a leader cut off
   * from the others never answers from a stale state.
   */
  async linearizable(): Promise<void> {
    if (this.o.bugs?.leaderReadsWithoutQuorum) return;
    try {
      await this.o.log.readBarrier(this.o.readBarrierTimeoutMs ?? READ_BARRIER_TIMEOUT_MS);
    } catch (e) {
      throw logError(e, (m) => `this node could not confirm it still leads the cluster: ${m}; try again`);
    }
  }
}

/**
 * The log's errors as the API's: a node that stopped is not "no leader, try again" (asking it
 * again will not help); anything else (not the leader any more, an entry lost in a leader change)
 * is, and the client may retry.
 */
function logError(e: unknown, noLeader: (message: string) => string): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof NodeStoppedError) return new ApiError(e.failure ? 'internal' : 'unreachable', e.failure ? e.message : `${e.message}: ask another node`);
  return new ApiError('no-leader', noLeader((e as Error).message));
}

/** A request's id as the log carries it; an id that is not a short string is refused. */
export function requestIdOf(req: { requestId?: unknown }): { requestId?: string } {
  const id = req.requestId;
  if (id === undefined || id === null) return {};
  if (typeof id !== 'string' || id.length === 0 || id.length > 128) throw new ApiError('invalid', `requestId: expected a string of 1 to 128 characters, got ${JSON.stringify(id)?.slice(0, 80)}`);
  return { requestId: id };
}

/** The leader's answer to a passed-on call: its body, or its error as the same ApiError. */
function answerOf(status: number, body: unknown): unknown {
  if (status < 400) return body;
  const e = (body as { error?: { code?: string; message?: string; details?: unknown } })?.error;
  throw new ApiError((e?.code as ErrorCode) ?? 'internal', e?.message ?? `leader answered ${status}`, e?.details);
}
