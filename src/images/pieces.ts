// An image is stored as fixed-size pieces: each piece is its own Iroh blob, and the image is an
// Iroh collection (a hash sequence) of them. iroh-blobs fetches one blob from one provider at a
// time, so pieces are what lets a download pull from several providers at once, and what lets a
// node serve the pieces it has before it holds the whole image (as Kraken and Dragonfly do). The
// whole-file BLAKE3 (what b3sum prints) stays the image's identity; the pieces are how it travels.
//
// Piece size: 8 MiB, chosen from 4-16 MiB because
// - parallelism: a 200 MB image is 25 pieces, enough for 2-4 providers with 2-3 requests in flight
//   each; a 20 GB image is 2,560;
// - per-piece overhead: every piece is one iroh-blobs request, and iroh's direct download opens a
//   QUIC connection per request (measured here: ~25 ms per piece when requests run one after the
//   other). At 8 MiB (~100 ms on the wire at 80 MB/s) two or three requests in flight per
//   provider hide it; at 4 MiB the connections, status-document bitmap writes, progress callbacks
//   and verifier exports all double for no gain in throughput (measured: 4, 8 and 16 MiB pieces
//   all reach the raw single-blob rate with 2-4 in flight);
// - stalls: a piece whose provider dies is fetched again from another one; iroh resumes the
//   partial blob, so a stall costs at most one piece (8 MiB) of duplicate bytes, less in practice;
// - serving early: a downloader serves a piece as soon as it holds it whole, ~0.1 s after it
//   started it at LAN speed, so N downloaders start feeding each other almost at once;
// - bookkeeping: the hash sequence costs 32 bytes per piece (20 GB -> 80 KiB) and the holdings
//   bitmap one bit per piece (20 GB -> 320 bytes, rewritten in the status document as pieces
//   arrive); 1 MiB pieces would make both 8x larger;
// - rate limiting paces the start of pieces, so the limiter's burst is one piece;
// - alignment: a power of two, a whole number of BLAKE3's 1 KiB chunks and iroh's 16 KiB groups.

export const DEFAULT_PIECE_SIZE = 8 * 1024 * 1024;
/** Tests and benchmarks may use smaller pieces; the daemon uses the default. */
export const MIN_PIECE_SIZE = 16 * 1024;
export const MAX_PIECE_SIZE = 64 * 1024 * 1024;

/** What a node knows of an image in pieces: enough to fetch, verify and serve it. */
export interface PieceManifest {
  /** The whole file's BLAKE3, blake3:<hex>: the image's identity. */
  hash: string;
  size: number;
  pieceSize: number;
  /** The collection (hash sequence) root, hex. */
  collection: string;
  /** Each piece's BLAKE3 (its Iroh blob hash), hex, in order. */
  pieces: string[];
}

export function checkPieceSize(pieceSize: number): void {
  if (!Number.isInteger(pieceSize) || pieceSize < MIN_PIECE_SIZE || pieceSize > MAX_PIECE_SIZE || pieceSize % 1024 !== 0) {
    throw new Error(`piece size: expected a multiple of 1 KiB from ${MIN_PIECE_SIZE} to ${MAX_PIECE_SIZE} bytes, got ${pieceSize}`);
  }
}

export function pieceCount(size: number, pieceSize: number): number {
  return Math.ceil(size / pieceSize);
}

export function pieceLength(index: number, size: number, pieceSize: number): number {
  return Math.max(0, Math.min(pieceSize, size - index * pieceSize));
}

/** The name of piece `index` in the collection. Deterministic, so the same pieces make the same collection everywhere. */
export function pieceName(index: number): string {
  return String(index).padStart(6, '0');
}

/** Whether a manifest is internally consistent (counts and sizes agree). */
export function manifestProblem(m: PieceManifest): string | null {
  if (!/^blake3:[0-9a-f]{64}$/.test(m.hash)) return `bad image hash ${JSON.stringify(m.hash)}`;
  if (!/^[0-9a-f]{64}$/.test(m.collection)) return `bad collection hash ${JSON.stringify(m.collection)}`;
  if (!Number.isSafeInteger(m.size) || m.size < 0) return `bad size ${m.size}`;
  try {
    checkPieceSize(m.pieceSize);
  } catch (e) {
    return (e as Error).message;
  }
  const n = pieceCount(m.size, m.pieceSize);
  if (m.pieces.length !== n) return `${m.pieces.length} pieces listed, but ${m.size} bytes in ${m.pieceSize}-byte pieces make ${n}`;
  if (m.pieces.some((p) => !/^[0-9a-f]{64}$/.test(p))) return 'bad piece hash';
  return null;
}

/**
 * The children of a collection's root blob (a hash sequence: 32-byte hashes back to back), hex.
 * An Iroh collection's first child is its metadata blob (the names); the pieces follow.
 */
export function parseHashSeq(bytes: Uint8Array): string[] {
  if (bytes.length % 32 !== 0) throw new Error(`a hash sequence is a multiple of 32 bytes, got ${bytes.length}`);
  const out: string[] = [];
  for (let o = 0; o < bytes.length; o += 32) out.push(Buffer.from(bytes.subarray(o, o + 32)).toString('hex'));
  return out;
}

/** Rendezvous (highest random weight) score: who of several candidates "owns" a key. */
export function rendezvous(key: string, candidate: string): number {
  // FNV-1a over key and candidate, then a 32-bit mix: cheap, stable, well spread.
  let h = 0x811c9dc5;
  const s = `${key}\u0000${candidate}`;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export function owner(key: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestScore = -1;
  for (const c of candidates) {
    const s = rendezvous(key, c);
    if (s > bestScore || (s === bestScore && best !== undefined && c < best)) {
      best = c;
      bestScore = s;
    }
  }
  return best;
}
