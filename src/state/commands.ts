import type { ImageSource, Kind, Labels, Spec } from './types.js';

// The entries of the replicated log. Each is decided by the leader (time, ids) so that applying it
// is deterministic on every replica: the state machine reads no clock and no randomness.

export interface NodeRecord {
  nodeId: string;
  name: string;
  role: 'voter' | 'worker';
  api: string | null;
  addresses: string[];
  labels: Labels;
  capacity: { vcpus: number; memoryMiB: number };
  /** Image formats this node's drivers can run (empty until a driver is enabled). */
  formats: string[];
  /** The node's document author: its entries in the status document are believed only from it. */
  author?: string;
  /** No new VMs are placed here (`blixard node cordon`). */
  cordoned?: boolean;
  registeredAt: string;
  updatedAt: string;
}

export type ApplyAction = 'create' | 'configure' | 'unchanged' | 'prune';

export interface ApplyChange {
  kind: Kind;
  name: string;
  action: ApplyAction;
  /** The resourceVersion the plan read; 0 when the resource did not exist. */
  read: number;
  labels?: Labels;
  spec?: Spec;
  source?: ImageSource;
}

export interface DeleteTarget {
  kind: Kind;
  name: string;
}

/**
 * A client's writes carry the id it chose for them (`requestId`): a write retried after a timeout
 * or a lost answer is applied at most once, and the retry gets the first attempt's outcome.
 */
export type Command = (
  | { op: 'bootstrap'; time: string; clusterId: string; node: NodeRecord; docs?: ClusterDocs }
  | { op: 'setDocs'; time: string; docs: ClusterDocs }
  | { op: 'admitNode'; time: string; node: NodeRecord; secretHash: string }
  | { op: 'registerNode'; time: string; node: NodeRecord }
  | { op: 'apply'; time: string; planId: string; applyset: string; changes: ApplyChange[]; revision?: string }
  | { op: 'delete'; time: string; targets: DeleteTarget[] }
  | { op: 'addJoinSecret'; time: string; secretHash: string; role: 'voter' | 'worker'; expiresAt: string }
  | { op: 'place'; time: string; place: PlaceChange[]; evict: VmRef[]; unschedulable: (VmRef & { reason: string })[]; release?: VmRef[] }
  | { op: 'cordon'; time: string; nodeId: string; cordoned: boolean; drain?: boolean }
) & { requestId?: string };

/**
 * The tickets of the cluster's two documents. They carry namespace secrets: kept in the Raft state
 * (voters only), handed to a node when it is admitted, never published.
 */
export interface ClusterDocs {
  /** Document ids, to reopen them after a restart. */
  clusterId: string;
  statusId: string;
  clusterWrite: string;
  clusterRead: string;
  statusWrite: string;
}

/** A VM is named with its uid so a decision about a deleted-and-recreated VM cannot land on the new one. */
export interface VmRef {
  vm: string;
  uid: string;
}

export interface PlaceChange extends VmRef {
  nodeId: string;
}

export interface Conflict {
  kind: Kind;
  name: string;
  read: number;
  current: number;
}

export type ApplyOutcome =
  | { ok: true; index: number; results: { kind: Kind; name: string; action: 'created' | 'configured' | 'unchanged' | 'pruned' }[] }
  | { ok: false; code: 'conflict'; message: string; conflicts: Conflict[] }
  | { ok: false; code: 'invalid'; message: string };

export type DeleteOutcome =
  | { ok: true; index: number; results: { kind: Kind; name: string; action: 'deleted' | 'notfound' }[] }
  | { ok: false; code: 'invalid'; message: string };

export type CommandOutcome =
  | ApplyOutcome
  | DeleteOutcome
  | { ok: true; index: number }
  | { ok: false; code: 'exists' | 'unknown'; message: string };

export function encodeCommand(c: Command): Uint8Array {
  return Buffer.from(JSON.stringify(c), 'utf8');
}

export function decodeCommand(data: Uint8Array): Command {
  return JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8')) as Command;
}
