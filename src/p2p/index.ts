export { startIroh, bindAddresses, toIrohHash, fromIrohHash } from './iroh.js';
export type { IrohNodeOptions } from './iroh.js';
