// Linearizable reads without writing to the log (ReadIndex, Raft thesis 6.4), after etcd's
// read_only.go. The leader records its commit index for the request, then broadcasts a heartbeat
// carrying the request id; once a quorum answers that heartbeat it knows it was still the leader
// when the request arrived, so any read at or after that commit index is linearizable. Requests
// are answered in arrival order: an answer for a later request confirms every earlier one.

export interface ReadIndexStatus {
  /** The commit index when the request arrived. */
  index: number;
  /** Who asked: the leader itself, or a follower that forwarded it. */
  from: string;
  ctx: string;
  acks: Map<string, boolean>;
}

export class ReadOnly {
  private readonly pending = new Map<string, ReadIndexStatus>();
  private queue: string[] = [];

  /** Registers a request; a repeated ctx is ignored (the first one is already being confirmed). */
  addRequest(index: number, from: string, ctx: string): void {
    if (this.pending.has(ctx)) return;
    this.pending.set(ctx, { index, from, ctx, acks: new Map() });
    this.queue.push(ctx);
  }

  /** Records that `id` answered the heartbeat for ctx; returns the acks so far (undefined if unknown). */
  recvAck(id: string, ctx: string): ReadonlyMap<string, boolean> | undefined {
    const rs = this.pending.get(ctx);
    if (rs === undefined) return undefined;
    rs.acks.set(id, true);
    return rs.acks;
  }

  /** ctx is confirmed: removes and returns it and every request queued before it. */
  advance(ctx: string): ReadIndexStatus[] {
    const at = this.queue.indexOf(ctx);
    if (at < 0) return [];
    const done = this.queue.slice(0, at + 1);
    this.queue = this.queue.slice(at + 1);
    const out: ReadIndexStatus[] = [];
    for (const c of done) {
      const rs = this.pending.get(c);
      if (rs === undefined) throw new Error(`read index ${c} is queued but not pending`);
      this.pending.delete(c);
      out.push(rs);
    }
    return out;
  }

  /** The newest request; its heartbeat confirms all of them. '' if none. */
  lastPendingRequestCtx(): string {
    return this.queue.at(-1) ?? '';
  }

  get size(): number {
    return this.queue.length;
  }
}
