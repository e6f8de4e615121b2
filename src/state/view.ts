import type { NodeRecord } from './commands.js';
import type { PlacementRecord } from './store.js';
import type { Kind, StoredResource } from './types.js';

// What a node needs to know of the desired state, wherever it comes from: a voter reads its own
// store (the Raft state machine), a worker the cluster document the leader publishes.

export interface DesiredView {
  get(kind: Kind, name: string): StoredResource | undefined;
  list(kind?: Kind): StoredResource[];
  placement(vm: string): PlacementRecord | undefined;
  listNodes(): NodeRecord[];
}
