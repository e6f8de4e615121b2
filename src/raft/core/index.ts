// The pure Raft core: no I/O, no clock, no randomness of its own. See raw-node.ts for the driver
// contract and types.ts for the data it exchanges.
export { RawNode } from './raw-node.js';
export type { Status, PeerStatus, LogView } from './raw-node.js';
export type { ProgressState } from './progress.js';
export { MemoryStorage, StorageError } from './storage.js';
export type { Storage, StorageErrorKind } from './storage.js';
export { encodeConfChange, decodeConfChange } from './confchange.js';
export { MESSAGE_TYPES, RaftError, message, entrySize } from './types.js';
export type {
  Bugs,
  ConfChange,
  ConfChangeSingle,
  ConfState,
  Config,
  Entry,
  EntryType,
  HardState,
  Message,
  MessageType,
  RaftErrorCode,
  Ready,
  ReadState,
  Role,
  Snapshot,
  SnapshotMeta,
  SoftState,
} from './types.js';
