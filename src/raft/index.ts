export { Wal, WalCorruptionError } from './wal.js';
export type { WalOptions, WalRecord, WalStats } from './wal.js';
export { writeSnapshot, readLatestSnapshot } from './snapshot.js';
export type { Snapshot, SnapshotMeta } from './snapshot.js';
export { SingleNodeLog } from './single-node.js';
export type { StateMachine, SingleNodeOptions } from './single-node.js';
export type { Transport, RaftPeer } from './transport.js';
