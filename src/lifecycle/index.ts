export { every } from './runnable.js';
export type { Runnable, EveryOptions } from './runnable.js';
export { Coalescer } from './coalescer.js';
export { Signal } from './signal.js';
