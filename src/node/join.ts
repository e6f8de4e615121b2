import { decodeTicket, type JoinTicket } from '../cluster/index.js';
import { RpcConnectError, type RpcClient } from '../p2p/index.js';
import { nodeRequest, type JoinResponse } from '../service/index.js';
import type { NodeRecord } from '../state/index.js';
import type { Membership } from './membership.js';
import { StartupError } from './startup-error.js';

// A new data dir with a ticket joins before anything else: the leader admits it and tells it the
// members, the documents and its role.

export function ticketOf(text: string): JoinTicket {
  try {
    return decodeTicket(text);
  } catch (e) {
    throw new StartupError(`--join: ${(e as Error).message}`, 'invalid');
  }
}

/** How long a join keeps dialling the node in the ticket: a busy node may take seconds to answer. */
const JOIN_CONNECT_FOR_MS = 30_000;

/** Calls `fn` again while no connection could be made (nothing was sent), for up to `ms`. */
async function retryConnect<T>(fn: () => Promise<T>, ms: number, waiting?: (why: string) => void): Promise<T> {
  const end = Date.now() + ms;
  for (let wait = 250; ; wait = Math.min(wait * 2, 2_000)) {
    try {
      return await fn();
    } catch (e) {
      if (!(e instanceof RpcConnectError) || Date.now() + wait > end) throw e;
      waiting?.((e as Error).message);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

export async function joinCluster(o: { ticket: JoinTicket; rpc: RpcClient; self: string; record: NodeRecord; now: Date; connectForMs?: number; waiting?: (why: string) => void }): Promise<Membership> {
  const { ticket } = o;
  if (ticket.expiresAt <= o.now.toISOString()) throw new StartupError(`--join: the ticket expired at ${ticket.expiresAt}; ask for a new one (blixard node ticket)`, 'invalid');
  const call = () => o.rpc.call(ticket.leader, nodeRequest({ op: 'join', req: { secret: ticket.secret, node: o.record } }), 30_000);
  const res = await retryConnect(call, o.connectForMs ?? JOIN_CONNECT_FOR_MS, o.waiting).catch((e: unknown) => {
    throw new StartupError(`--join: cannot reach the node in the ticket (${ticket.leader.nodeId.slice(0, 10)} at ${ticket.leader.addresses.join(', ')}): ${(e as Error).message}`, 'unreachable');
  });
  if (res.status !== 200) {
    const msg = (res.body as { error?: { message?: string } })?.error?.message ?? `status ${res.status}`;
    throw new StartupError(`--join: refused: ${msg}`, res.status === 401 ? 'unauthorized' : 'internal');
  }
  const j = res.body as JoinResponse;
  return { clusterId: j.clusterId, role: j.role, docs: j.docs, trusted: [ticket.leader, ...j.members.filter((m) => m.nodeId !== o.self)], since: o.now.toISOString() };
}

/** What --bootstrap and --join mean for this data dir (SPEC section 4); bad combinations stop the start. */
export function checkStart(m: Membership | undefined, ticket: JoinTicket | undefined, bootstrap: boolean, p2pOff: boolean, log: { warn(msg: string): void }): void {
  if (m) {
    if (bootstrap) log.warn(`--bootstrap ignored: this data dir already belongs to cluster ${m.clusterId}`);
    if (ticket && ticket.cluster !== m.clusterId) throw new StartupError(`--join: the ticket is for cluster ${ticket.cluster}, but this data dir belongs to cluster ${m.clusterId}`, 'invalid');
    if (ticket) log.warn('--join ignored: this data dir is already a member of that cluster');
  } else if (bootstrap && ticket) throw new StartupError('--bootstrap and --join exclude each other: create a cluster, or join one', 'invalid');
  if (p2pOff && ticket && !m) throw new StartupError('--join: this node runs with --p2p off and joins nothing (use --p2p on)', 'invalid');
}
