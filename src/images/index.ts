export { blake3File, hexOf } from './hash.js';
export type { FileDigest } from './hash.js';
export { hashOfTicket } from './ticket.js';
export { BlobStore, HashMismatchError } from './blobs.js';
export { ImageFiles } from './files.js';
export type { BlobInfo } from './blobs.js';
