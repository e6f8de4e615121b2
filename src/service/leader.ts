import { ApiError, type ErrorCode } from '../api/index.js';
import { NodeStoppedError, type ClusterLog } from '../raft/index.js';
import { encodeCommand, type Command, type CommandOutcome, type DesiredStateStore } from '../state/index.js';
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
  proposeTimeoutMs?: number;
  readBarrierTimeoutMs?: number;
}

const PROPOSE_TIMEOUT_MS = 15_000;
const READ_BARRIER_TIMEOUT_MS = 5_000;

export class Leader {
  constructor(private readonly o: LeaderOptions) {}

  /** This node leads a cluster (it has applied the cluster's first entry). */
  get isLeader(): boolean {
    return this.o.log.isLeader && this.o.store.clusterId !== null;
  }

  /** Serves `call` here when this node leads, else passes it on to the leader as it is. */
  async run<T>(call: Call, local: () => Promise<T>): Promise<T> {
    if (this.isLeader) return local();
    return (await this.forward(call)) as T;
  }

  /** Passes a call on to the leader; its answer, or its error as an ApiError. */
  async forward(call: Call): Promise<unknown> {
    const { log, self } = this.o;
    const leader = log.leader ?? this.o.fallback();
    if (!leader) throw new ApiError('no-leader', 'no leader is known right now; try again in a moment');
    if (leader === self) throw new ApiError('no-leader', 'leadership is changing; try again');
    const res = await this.o.send(leader, call).catch((e: unknown) => {
      throw new ApiError('no-leader', `cannot reach the leader ${this.o.store.node(leader)?.name ?? leader.slice(0, 10)}: ${(e as Error).message}`);
    });
    if (res.status >= 400) {
      const e = (res.body as { error?: { code?: string; message?: string; details?: unknown } })?.error;
      throw new ApiError((e?.code as ErrorCode) ?? 'internal', e?.message ?? `leader answered ${res.status}`, e?.details);
    }
    return res.body;
  }

  /** Commits a command; a leader that lost its quorum keeps proposals waiting, so this is bounded. */
  async propose(cmd: Command): Promise<CommandOutcome> {
    const ms = this.o.proposeTimeoutMs ?? PROPOSE_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ApiError('no-leader', `not committed within ${ms / 1000} s: the cluster may have lost its quorum (the change may still be applied later)`)), ms);
    });
    try {
      return (await Promise.race([this.o.log.propose(encodeCommand(cmd)), timeout])).result as CommandOutcome;
    } catch (e) {
      throw logError(e, (m) => m);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Reads go to the leader (SPEC section 1, step 8) and are linearizable, as etcd's are by default:
   * the leader first confirms with a quorum that it still leads (ReadIndex), so a leader cut off
   * from the others never answers from a stale state.
   */
  async linearizable(): Promise<void> {
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
