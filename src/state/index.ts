export * from './types.js';
export { withDefaults, sortKeys, VM_DEFAULTS, PEER_DEFAULTS } from './defaults.js';
export { comparable, changeEffects, fieldEffect, maxEffect, pointerToField } from './effects.js';
export type { Comparable, ChangeEffects, FieldChange } from './effects.js';
export { encodeCommand, decodeCommand } from './commands.js';
export type { Command, CommandOutcome, ApplyChange, ApplyAction, ApplyOutcome, DeleteOutcome, DeleteTarget, Conflict, NodeRecord } from './commands.js';
export { DesiredStateStore, uidFor, PLAN_MEMORY } from './store.js';
export type { ApplysetRecord, JoinSecret } from './store.js';
export { parseDuration, parseBytes, parseRate, formatDuration, formatBytes } from './units.js';
