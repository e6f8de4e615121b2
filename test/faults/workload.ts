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
export type RecordedOp = Operation & { node: number; error?: string; at: number };

export interface WorkloadResult {
  ops: RecordedOp[];
  /** Calls left out of the history as never taken (refused, or rejected by the state machine). */
  dropped: RecordedOp[];
  /** Acknowledged writes, in the order they were acknowledged. */
  acks: Ack[];
  /** The longest any call took, failed or not. */
  slowestMs: number;
  /** Calls refused at the connection (sent to a node that was down): never reached a node. */
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

/** Runs until `stop` resolves, then waits for the calls in flight. */
export async function runWorkload(o: WorkloadOptions, stop: Promise<void>): Promise<WorkloadResult> {
  const random = o.random ?? Math.random;
  const ops: RecordedOp[] = [];
  const dropped: RecordedOp[] = [];
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
      c = new ApiClient({ server: api, token, timeoutMs: o.timeoutMs, retryMs: o.timeoutMs });
      clientsByServer.set(api, c);
    }
    return c;
  };

  const one = async (client: string, seq: number) => {
    const servers = o.servers();
    const node = Math.floor(random() * servers.length);
    const api = clientFor(servers[node]!);
    const key = imageKey(Math.floor(random() * o.keys));
    const write = random() < (o.writeShare ?? 0.5);
    const op: RecordedOp = { id: nextId++, client, key, kind: write ? 'put' : 'get', call: clock++, ret: Infinity, node, at: Date.now() };
    const t0 = Date.now();
    try {
      if (write) {
        op.value = `${client}.${seq}`;
        await api.apply({
          desired: [{ kind: 'Image', name: key, labels: { v: op.value }, spec: { blob: HASH, format: 'raw' }, source: { hash: HASH, size: null } }],
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
      slowestMs = Math.max(slowestMs, Date.now() - t0);
    }
  };

  await Promise.all(
    Array.from({ length: o.clients }, async (_, c) => {
      for (let seq = 0; !stopped; seq++) await one(`c${c}`, seq);
    }),
  );
  for (const c of clientsByServer.values()) c.close();
  return { ops, dropped, acks, slowestMs, refused, rejected, failed };
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
