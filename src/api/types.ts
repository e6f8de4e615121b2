import type { Plan } from '../manifest/index.js';
import type { DesiredResource, Kind, Labels, StoredMetadata, Spec } from '../state/index.js';

// The JSON shapes of the node API (SPEC sections 3 and 4). The CLI prints several of them as-is
// for `-o json`, so they are a contract with scripts: add fields, never rename or drop them.

export interface Condition {
  type: 'Scheduled' | 'ImageReady' | 'Running';
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
}

export interface VmStatus {
  phase: 'Pending' | 'Pulling' | 'Starting' | 'Running' | 'Stopping' | 'Stopped' | 'Failed' | 'Unknown';
  nodeId: string | null;
  observedGeneration: number;
  conditions: Condition[];
  message: string;
}

export interface ImageStatus {
  hash: string | null;
  size: number | null;
  holders: string[];
}

export interface PeerStatus {
  registered: boolean;
  ready: boolean;
  /** This node's connection to the peer (blixard/peer/1): up, round-trip time, last heard from. */
  connected: boolean;
  rttMs: number | null;
  lastSeen: string | null;
}

export interface TransferJson {
  hash: string;
  /** The VMs waiting for it (none: cache warming). */
  vms: string[];
  priority: 'vm' | 'warm';
  phase: 'finding' | 'fetching' | 'verifying';
  bytes: number;
  total: number | null;
  pieces: number;
  piecesTotal: number | null;
  /** Bytes received so far from each node. */
  fromPeers: Record<string, number>;
  startedAt: string;
}

export interface PeerHealthJson {
  nodeId: string;
  name: string;
  connected: boolean;
  rttMs: number | null;
  lastSeen: string | null;
  lastError: string | null;
}

export interface ResourceJson {
  apiVersion: string;
  kind: Kind;
  metadata: StoredMetadata;
  spec: Spec;
  status: VmStatus | ImageStatus | PeerStatus;
}

/**
 * One line of a watch (GET /v1/resources/<kind>?watch=1), as Kubernetes names them: the current
 * resources first (ADDED), then SYNCED once, then every change of one (its whole new form, or
 * its last form when DELETED: removed, or no longer selected).
 */
export type WatchEvent = { type: 'ADDED' | 'MODIFIED' | 'DELETED'; object: ResourceJson } | { type: 'SYNCED' };

export interface EventJson {
  time: string;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface NodeJson {
  nodeId: string;
  name: string;
  role: 'voter' | 'worker';
  ready: boolean;
  labels: Labels;
  capacity: { vcpus: number; memoryMiB: number };
  allocated: { vcpus: number; memoryMiB: number };
  /** No new VMs are placed here. */
  cordoned: boolean;
  api: string | null;
  formats: string[];
  /** Its author id in the documents: entries under status/<nodeId>/ count only from this author. */
  author: string | null;
}

export interface StatusJson {
  nodeId: string;
  name: string;
  clusterId: string | null;
  version: string;
  raft: {
    role: 'leader' | 'follower' | 'candidate' | 'learner' | 'none';
    term: number;
    leader: string | null;
    commitIndex: number;
    appliedIndex: number;
    members: { nodeId: string; name: string; role: 'voter' | 'learner'; api: string | null }[];
  };
  nodes: NodeJson[];
  vms: { total: number; running: number };
  images: { total: number };
  /** This node's connections to its peers. */
  peers: PeerHealthJson[];
  /** Image downloads under way on this node. */
  transfers: TransferJson[];
  /** How many places observed state differs from desired (details: GET /v1/drift, `diff --actual`). */
  drift: number;
  applysets: { name: string; index: number; time: string; revision?: string }[];
  errors: { time: string; component: string; message: string }[];
  notes: string[];
}

export interface VersionJson {
  version: string;
  apiVersion: string;
  nodeId: string;
}

export interface PlanRequest {
  desired: DesiredResource[];
  applyset: string;
  prune: boolean;
}

/**
 * A write's id, chosen by the client and kept across its retries: the cluster applies a write at
 * most once, and a retry gets the first attempt's answer (SPEC section 12).
 */
export interface RequestId {
  requestId?: string;
}

export type ApplyRequest = (
  | (PlanRequest & { maxPrune: number; dryRun: boolean; plan?: undefined; revision?: string })
  | { plan: Plan; maxPrune: number; dryRun?: boolean; revision?: string }
) &
  RequestId;

export interface ApplyResult {
  kind: Kind;
  name: string;
  action: 'created' | 'configured' | 'unchanged' | 'pruned';
}

export interface ApplyResponse {
  planId: string;
  dryRun: boolean;
  index: number | null;
  results: ApplyResult[];
}

export interface DeleteRequest extends RequestId {
  targets: { kind: Kind; name: string }[];
}

export interface CordonRequest extends RequestId {
  cordoned: boolean;
  drain?: boolean;
}

export interface DeleteResponse {
  index: number;
  results: { kind: Kind; name: string; action: 'deleted' | 'notfound' }[];
}

export interface BlobJson {
  hash: string;
  size: number;
}

export interface TicketRequest {
  role: 'voter' | 'worker';
  ttlSeconds: number;
}

export interface DriftJson {
  kind: 'VirtualMachine' | 'Image';
  name: string;
  nodeId: string | null;
  why: string;
  message: string;
}
