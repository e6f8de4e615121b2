import { ApiClient, ApiError } from '../../src/api/index.js';
import type { Operation } from '../raft-sim/linearizability.js';

// A black-box client workload for the fault tests: clients write and read a few keys through
// whichever node they pick, as an operator's scripts would, and every call is recorded as an
// operation of a key-value history for the linearizability checker. A key is an Image; its value
// is the label `v`. Calls and returns get logical times from one counter: all clients run in this
// process, so the order of those events is their real-time order.

export interface WorkloadOptions {
  /** Each node's API address and token (a node that is down refuses the connection). */
  servers: () => readonly Server[];
  clients: number;
  keys: number;
  /** Each call's budget, retries included (the CLI's --timeout). */
  timeoutMs: number;
  /**
   * How long a call retries `no-leader` and lost connections on its node (default: its whole
   * budget, as the CLI does). 0: the first answer is the call's, and the client's next call goes
   * to another node, as a client that knows several nodes would.
   */
  retryMs?: number;
  /** Share of writes among the operations. */
  writeShare?: number;
  random?: () => number;
}

export interface Server {
  api: string;
  token: string;
}

export interface Ack {
  /** Wall clock at the acknowledgement. */
  at: number;
  latencyMs: number;
}

/** An operation with where it was sent (the node's index) and, when it failed, why. */
export type RecordedOp = Operation & { node: number; error?: string; at: number; tookMs?: number };

export interface WorkloadResult {
  ops: RecordedOp[];
  /** Every call made, answered or failed, in the order they were made. */
  calls: RecordedOp[];
  /** Calls left out of the history as never taken (refused, or rejected by the state machine). */
  dropped: RecordedOp[];
  /** Acknowledged writes, in the order they were acknowledged. */
  acks: Ack[];
  /** The longest any call took, failed or not. */
  slowestMs: number;
  /** Calls refused at the connection (sent to a node that was down), or refused by a node that handed them to no leader: never taken. */
  refused: number;
  /** Writes the cluster refused because their key changed since their plan read it. */
  rejected: number;
  /** Calls that failed otherwise, by error code: their outcome is unknown. */
  failed: Record<string, number>;
}

export function imageKey(i: number): string {
  return `fk-${i}`;
}

const HASH = `blake3:${'f'.repeat(64)}`;

/** A key's value: its Image's label `v`, or null while there is no such Image. */
async function valueOf(api: ApiClient, key: string): Promise<string | null> {
  return api.get('Image', key).then(
    (r) => r.metadata.labels.v ?? null,
    (e: unknown) => {
      if (e instanceof ApiError && e.code === 'not-found') return null;
      throw e;
    },
  );
}

/** One call of the history: who makes it, through which node, on which key. */
export interface CallSpec {
  client: string;
  node: number;
  key: string;
  /** The value to write; a read without it. */
  value?: string;
}

export interface Workload {
  /** Settles once `stop` resolved and the calls in flight answered. */
  done: Promise<WorkloadResult>;
  /** Makes one call outside the random clients, recorded in the same history. */
  call(spec: CallSpec): Promise<RecordedOp>;
}

/** Runs until `stop` resolves, then waits for the calls in flight. */
export function runWorkload(o: WorkloadOptions, stop: Promise<void>): Promise<WorkloadResult> {
  return startWorkload(o, stop).done;
}

/** Starts the random clients; `call` adds chosen calls (probes) to the same history. */
export function startWorkload(o: WorkloadOptions, stop: Promise<void>): Workload {
  const random = o.random ?? Math.random;
  const ops: RecordedOp[] = [];
  const dropped: RecordedOp[] = [];
  const calls: RecordedOp[] = [];
  const acks: Ack[] = [];
  const failed: Record<string, number> = {};
  let refused = 0;
  let rejected = 0;
  let slowestMs = 0;
  let clock = 0;
  let nextId = 0;
  let stopped = false;
  void stop.then(() => {
    stopped = true;
  });
  const clientsByServer = new Map<string, ApiClient>();
  const clientFor = ({ api, token }: Server) => {
    let c = clientsByServer.get(api);
    if (!c) {
      c = new ApiClient({ server: api, token, timeoutMs: o.timeoutMs, retryMs: o.retryMs ?? o.timeoutMs });
      clientsByServer.set(api, c);
    }
    return c;
  };

  const inFlight = new Set<Promise<unknown>>();
  const call = async ({ client, node, key, value }: CallSpec): Promise<RecordedOp> => {
    const api = clientFor(o.servers()[node]!);
    const write = value !== undefined;
    const op: RecordedOp = { id: nextId++, client, key, kind: write ? 'put' : 'get', call: clock++, ret: Infinity, node, at: Date.now() };
    if (write) op.value = value;
    calls.push(op);
    const t0 = Date.now();
    try {
      if (value !== undefined) {
        await api.apply({
          desired: [{ kind: 'Image', name: key, labels: { v: value }, spec: { blob: HASH, format: 'raw' }, source: { hash: HASH, size: null } }],
          applyset: `faults-${key}`,
          prune: false,
          maxPrune: 0,
          dryRun: false,
        });
        acks.push({ at: Date.now(), latencyMs: Date.now() - t0 });
      } else {
        op.output = await valueOf(api, key);
      }
      op.ret = clock++;
      ops.push(op);
    } catch (e) {
      const code = e instanceof ApiError ? e.code : 'other';
      op.error = e instanceof Error ? e.message : String(e);
      const details = e instanceof ApiError ? (e.details as { connection?: string; outcome?: string } | undefined) : undefined;
      // Refused at the connection by a node that is down, with no earlier attempt that reached
      // one: never taken. (After an attempt that did, the client says the outcome is unknown.)
      const connection = details?.outcome === 'unknown' ? undefined : details?.connection;
      if (connection === 'ECONNREFUSED') {
        refused++;
        if (write) dropped.push(op);
      } else if (details?.outcome === 'not-applied') {
        // The node said it handed the call to no leader: never taken.
        refused++;
        if (write) dropped.push(op);
      } else if (code === 'conflict') {
        // Refused by the state machine (another write changed the key since this one's plan
        // read it; a retry is answered as its first attempt was): it took no effect.
        rejected++;
        dropped.push(op);
      } else {
        failed[code] = (failed[code] ?? 0) + 1;
        // A write whose answer never came may have taken effect, at any time after its call.
        if (write) ops.push(op);
      }
      if (connection === 'ECONNREFUSED') await new Promise((r) => setTimeout(r, 20));
    } finally {
      op.tookMs = Date.now() - t0;
      slowestMs = Math.max(slowestMs, op.tookMs);
    }
    return op;
  };
  const one = (client: string, seq: number) =>
    call({
      client,
      node: Math.floor(random() * o.servers().length),
      key: imageKey(Math.floor(random() * o.keys)),
      ...(random() < (o.writeShare ?? 0.5) ? { value: `${client}.${seq}` } : {}),
    });

  const done = (async () => {
    await Promise.all(
      Array.from({ length: o.clients }, async (_, c) => {
        for (let seq = 0; !stopped; seq++) await one(`c${c}`, seq);
      }),
    );
    while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
    for (const c of clientsByServer.values()) c.close();
    return { ops, calls, dropped, acks, slowestMs, refused, rejected, failed };
  })();
  return {
    done,
    call: (spec) => {
      const p = call(spec);
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
      return p;
    },
  };
}

/**
 * After the faults heal: each key read through every node, as operations that start after every
 * other ended (so an acknowledged write that was lost shows as a read the checker cannot place).
 */
export async function finalReads(servers: readonly Server[], keys: number, history: Operation[]): Promise<void> {
  let clock = Math.max(0, ...history.map((op) => (Number.isFinite(op.ret) ? op.ret : op.call))) + 1;
  let id = Math.max(0, ...history.map((op) => op.id)) + 1;
  for (const server of servers) {
    const api = new ApiClient({ server: server.api, token: server.token, timeoutMs: 30_000, retryMs: 30_000 });
    try {
      for (let k = 0; k < keys; k++) {
        const key = imageKey(k);
        const call = clock++;
        const output = await valueOf(api, key);
        history.push({ id: id++, client: `final@${server.api}`, key, kind: 'get', output, call, ret: clock++ });
      }
    } finally {
      api.close();
    }
  }
}

/** For each fault time, how long until the next write was acknowledged (undefined: none was). */
export function firstAckAfter(faults: readonly number[], acks: readonly Ack[]): (number | undefined)[] {
  return faults.map((t) => {
    const next = acks.find((a) => a.at > t);
    return next === undefined ? undefined : next.at - t;
  });
}

/**
 * For each fault time t, the longest stretch of [t, t + windowMs] without an acknowledged write:
 * an answer in flight at the fault does not hide the stall that follows it.
 */
export function stallAfter(faults: readonly number[], acks: readonly Ack[], windowMs: number): number[] {
  return faults.map((t) => {
    const end = t + windowMs;
    let last = t;
    let longest = 0;
    for (const a of acks) {
      if (a.at <= t) continue;
      if (a.at > end) break;
      longest = Math.max(longest, a.at - last);
      last = a.at;
    }
    return Math.max(longest, end - last);
  });
}
