export { startNode, StartupError } from './daemon.js';
export type { StartOptions, RunningNode } from './daemon.js';
export { NodeBackend } from './backend.js';
export { loadOrCreateIdentity, nodeIdOf, dataPaths, DataDirInUseError } from './datadir.js';
export { resolveSettings, defaultSettings, readSettings } from './settings.js';
export type { NodeSettings, SettingFlags } from './settings.js';
export { encodeTicket, decodeTicket } from './ticket.js';
export type { JoinTicket } from './ticket.js';
