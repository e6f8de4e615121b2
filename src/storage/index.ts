export { writeFileAtomic, fsyncDir } from './atomic-file.js';
export type { AtomicWriteOptions } from './atomic-file.js';
