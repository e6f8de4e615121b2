// What this machine's kernel tells of its processes: /proc, the boot id, signals. A leaf: it
// imports no other folder, so the CLI (server records) and the node can use it without vm/.

export { pidExists, readProcStat, parseProcStat, bootId, isAlive, freshProcStats, sendSignal, signalName } from './proc.js';
export type { ProcStat, ProcessIdentity } from './proc.js';
