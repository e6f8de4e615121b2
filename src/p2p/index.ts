export { startIroh, bindAddresses, toIrohHash, fromIrohHash } from './iroh.js';
export type { IrohNodeOptions } from './iroh.js';
export { ReplicatedDoc } from './doc.js';
export type { DocEntry, DocEvent, DocMode } from './doc.js';
export { ProtocolRouter, ALPN, CLOSE } from './protocols.js';
export type { Alpn, ConnectionHandler, RouterEvents } from './protocols.js';
export { PeerManager, withTimeout } from './peers.js';
export type { PeerAddress, PeerHealth, PeerManagerOptions } from './peers.js';
export { FrameWriter, readFrames, MAX_FRAME_BYTES } from './framing.js';
