// The image cache's decision (--image-cache-size), pure: which images a node drops. Plan, then
// act: planEviction decides, ImageCache (cache-gc.ts) carries it out.
//
// What a node keeps of an image: its pieces in the blob store (what it serves to peers), and,
// only while a VM on this node needs the image, the whole file the hypervisor reads
// (<data-dir>/images/<hash>). So:
// 1. the file of an image no VM here needs is removed at once, whatever the limit: it can be
//    written out again from the pieces (and checked again) in about a second per GB;
// 2. past the limit, whole images no VM here needs are removed, least recently used first, until
//    the cache fits; an image a VM here needs is never removed, even when the cache stays over
//    the limit (the plan says by how much); neither is one being fetched or written out.

export interface CacheEntry {
  hash: string;
  /** Bytes of its pieces in the blob store. */
  pieceBytes: number;
  /** Bytes of its file for hypervisors (0: not written out). */
  fileBytes: number;
  /** When a VM last used it, or it arrived (ms). */
  lastUsed: number;
  /** A VM placed on this node needs it (image or initrd). */
  inUse: boolean;
  /** Being fetched, imported or written out right now. */
  busy: boolean;
}

export interface EvictionPlan {
  /** Files for hypervisors to remove (their images stay cached). */
  dropFiles: string[];
  /** Images to remove entirely, in the order they go. */
  evict: string[];
  before: number;
  after: number;
  /** Bytes still over the limit when only images in use (or busy) are left. */
  over: number;
}

export function planEviction(entries: CacheEntry[], limitBytes: number | null): EvictionPlan {
  const before = entries.reduce((n, e) => n + e.pieceBytes + e.fileBytes, 0);
  const dropFiles = entries.filter((e) => e.fileBytes > 0 && !e.inUse && !e.busy).map((e) => e.hash);
  const dropped = new Set(dropFiles);
  let total = entries.reduce((n, e) => n + e.pieceBytes + (dropped.has(e.hash) ? 0 : e.fileBytes), 0);
  const evict: string[] = [];
  if (limitBytes !== null && total > limitBytes) {
    const candidates = entries.filter((e) => !e.inUse && !e.busy).sort((a, b) => a.lastUsed - b.lastUsed || (a.hash < b.hash ? -1 : 1));
    for (const e of candidates) {
      if (total <= limitBytes) break;
      evict.push(e.hash);
      total -= e.pieceBytes + (dropped.has(e.hash) ? 0 : e.fileBytes);
    }
  }
  return { dropFiles, evict, before, after: total, over: limitBytes === null ? 0 : Math.max(0, total - limitBytes) };
}
