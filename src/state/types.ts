// The resource model shared by the store, the planner and the API. Plain data only: the store is
// a deterministic state machine, so everything in it must serialise to JSON and back unchanged.

export const API_VERSION = 'blixard.dev/v1';

export const KINDS = ['VirtualMachine', 'Image', 'Peer'] as const;
export type Kind = (typeof KINDS)[number];

export type Labels = Record<string, string>;

export type ImageFormat = 'kernel' | 'raw' | 'qcow2' | 'executable';

export interface ImageSpec {
  path?: string;
  blob?: string;
  initrd?: string;
  format: ImageFormat;
  hash?: string;
  readyPattern?: string;
}

export interface PortSpec {
  host: number;
  guest: number;
  protocol?: 'tcp' | 'udp';
}

export interface VmSpec {
  image: string;
  vcpus?: number;
  memoryMiB?: number;
  state?: 'Running' | 'Stopped';
  kernelArgs?: string;
  restartPolicy?: 'Always' | 'OnFailure' | 'Never';
  ports?: PortSpec[];
  placement?: { nodeSelector?: Labels; spreadBy?: string };
}

export interface PeerSpec {
  nodeId: string;
  addresses?: string[];
  role?: 'voter' | 'worker';
  capacity?: { vcpus?: number; memoryMiB?: number };
}

export type Spec = ImageSpec | VmSpec | PeerSpec;

/**
 * What the content of an Image's files was when it was applied. The spec keeps the path as
 * written; the content is what the cluster runs, so a new file under the same path is a change.
 */
export interface ImageSource {
  hash: string; // blake3:<hex>, what b3sum prints
  size: number | null; // null when only a hash or ticket was given
  initrdHash?: string;
  initrdSize?: number;
}

/** A resource as an operator declares it (after loading), before the store has seen it. */
export interface DesiredResource {
  kind: Kind;
  name: string;
  labels: Labels;
  spec: Spec;
  source?: ImageSource;
}

export interface StoredMetadata {
  name: string;
  labels: Labels;
  uid: string;
  generation: number;
  resourceVersion: number;
  creationTimestamp: string;
}

/** A resource as the store holds it: the spec as written plus the bookkeeping of SPEC section 1. */
export interface StoredResource {
  kind: Kind;
  metadata: StoredMetadata;
  spec: Spec;
  source?: ImageSource;
  /** The applyset whose inventory holds this resource (for prune), null when created otherwise. */
  applyset: string | null;
}

export function resourceKey(kind: Kind, name: string): string {
  return `${kind}/${name}`;
}

export type Effect = 'none' | 'in-place' | 'restart' | 'recreate';
