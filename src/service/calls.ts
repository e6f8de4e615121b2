import type { ApplyRequest, CordonRequest, DeleteRequest, PlanRequest, TicketRequest } from '../api/index.js';
import type { ClusterDocs, Kind, NodeRecord } from '../state/index.js';

// What one node asks of another over blixard/api/1 (ALPN; authenticated by the caller's QUIC
// key): a follower or worker passes a call on to the leader as it is, a new node presents its
// join secret, and a node keeps its own record current. A call is data, so that it is forwarded
// as received, never rebuilt into a path.

export interface JoinRequest {
  secret: string;
  node: NodeRecord;
}

export interface JoinResponse {
  clusterId: string;
  role: 'voter' | 'worker';
  docs: ClusterDocs | null;
  members: { nodeId: string; addresses: string[] }[];
}

export type Call =
  | { op: 'list'; kind: Kind; selector: string }
  | { op: 'get'; kind: Kind; name: string }
  | { op: 'drift' }
  | { op: 'plan'; req: PlanRequest }
  | { op: 'apply'; req: ApplyRequest }
  | { op: 'delete'; req: DeleteRequest }
  | { op: 'ticket'; req: TicketRequest }
  | { op: 'cordon'; node: string; req: CordonRequest }
  | { op: 'join'; req: JoinRequest }
  | { op: 'register'; node: NodeRecord };

/** The request a call travels in on blixard/api/1 (p2p/rpc.ts carries it as one JSON frame). */
export interface NodeRequest {
  method: string;
  path: string;
  body?: unknown;
}

export const CALL_METHOD = 'CALL';

export function nodeRequest(call: Call): NodeRequest {
  return { method: CALL_METHOD, path: call.op, body: call };
}

/** The call a node request carries, or undefined for anything else. */
export function callOf(req: NodeRequest): Call | undefined {
  const body = req.body as Call | undefined;
  if (req.method !== CALL_METHOD || !body || typeof body !== 'object' || body.op !== req.path) return undefined;
  return body;
}
