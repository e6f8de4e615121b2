import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { MemoryStorage, RaftError, RawNode, type ConfChange, type ConfState, type Entry, type Message, type Ready, type Role } from './core/index.js';
import { decodeMessage, decodeRecord, encodeMessage, encodeRecord } from './codec.js';
import type { StateMachine } from './state-machine.js';
import { readLatestSnapshot, writeSnapshot } from './snapshot.js';
import type { ClusterLog } from './cluster-log.js';
import type { Transport } from './transport.js';
import { Wal } from './wal.js';

// The Raft node: the imperative shell around the pure core (etcd's node.go + raftexample). It
// owns the clock (tick), the disk (WAL + snapshots) and the network (Transport), and runs the
// Ready loop in the one order that keeps Raft safe: persist (fsync), then send, then apply, then
// advance. Proposals made while an fsync runs pile up in the core and go to disk together with
// the next Ready: one fsync covers them all (group commit), on the leader and on followers alike.

export class NotLeaderError extends Error {
  constructor(readonly leader: string | null) {
    super(leader ? `not the leader; the leader is ${leader}` : 'no leader is known yet');
    this.name = 'NotLeaderError';
  }
}

/**
 * The node has stopped: it was closed, or a disk failure ended its loop. Unlike a missing leader,
 * asking this node again will not help.
 */
export class NodeStoppedError extends Error {
  constructor(message: string, readonly failure?: Error) {
    super(message);
    this.name = 'NodeStoppedError';
  }
}

export class ProposalDroppedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProposalDroppedError';
  }
}

export interface RaftNodeOptions {
  dir: string;
  id: string;
  transport: Transport;
  sm: StateMachine;
  /** Creates a new cluster with these members when the dir holds no state yet. */
  bootstrap?: ConfState;
  tickMs?: number;
  electionTick?: number;
  heartbeatTick?: number;
  /** Snapshot (and compact the log) after this many applied entries. */
  snapshotEvery?: number;
  /** Entries kept in the log behind a snapshot, so slow followers catch up without one. */
  keepBehind?: number;
  maxSizePerMsg?: number;
  maxInflight?: number;
  onWarning?: (msg: string) => void;
  /** A mistake for the fault tests to catch (see WalOptions.keepTornTail). */
  keepTornWalTail?: boolean;
  /** A mistake for the fault tests to catch (see WalOptions.dieWhenFull). */
  walDiesWhenFull?: boolean;
  onRoleChange?: (role: Role, leader: string | null, term: number) => void;
  onConfChange?: (conf: ConfState) => void;
  /** After entries were applied (on every member, leader or not). */
  onApplied?: (index: number) => void;
  random?: () => number;
}

/** The defaults of tickMs and electionTick: an election after 1-2 s of silence. */
const TICK_MS = 100;
const ELECTION_TICK = 10;
const SNAPSHOT_RETRY_MS = 10_000;

interface Pending {
  term: number;
  resolve: (r: { index: number; result: unknown }) => void;
  reject: (e: Error) => void;
}

export class RaftNode implements ClusterLog {
  private readonly raw: RawNode;
  private readonly storage: MemoryStorage;
  private readonly wal: Wal;
  private readonly o: RaftNodeOptions;
  private readonly pending = new Map<number, Pending>();
  private readonly reads = new Map<string, { resolve: (index: number) => void; reject: (e: Error) => void }>();
  private readonly readWaiters: { index: number; resolve: () => void }[] = [];
  private ticker: NodeJS.Timeout | undefined;
  private running = false;
  private again = false;
  private closed = false;
  private failure: Error | null = null;
  private role: Role = 'follower';
  private leaderId: string | null = null;
  private conf: ConfState;
  private applied: number;
  private snapshotIndex: number;
  /** The snapshot before the latest: the WAL must still reach back to it (fallback if the latest is damaged). */
  private prevSnapshotIndex = 0;
  /** No snapshot is tried before this (ms since the epoch): the last one found no room. */
  private snapshotAfter = 0;
  private segmentMax = new Map<number, number>(); // WAL segment -> highest entry index in it
  private recoveredAt = 0;
  private leaderContactAt = 0;
  private recoveredWaiters: (() => void)[] = [];

  private constructor(o: RaftNodeOptions, raw: RawNode, storage: MemoryStorage, wal: Wal, applied: number, conf: ConfState) {
    this.o = o;
    this.raw = raw;
    this.storage = storage;
    this.wal = wal;
    this.applied = applied;
    this.snapshotIndex = applied;
    this.conf = conf;
  }

  static async open(o: RaftNodeOptions): Promise<RaftNode> {
    const storage = new MemoryStorage();
    const snap = await readLatestSnapshot(join(o.dir, 'snap'), o.onWarning);
    // Each new WAL segment starts with the current hard state and snapshot position, so that
    // dropping older segments after a snapshot never loses them.
    const { wal, records } = await Wal.open(join(o.dir, 'wal'), {
      ...(o.onWarning ? { onWarning: o.onWarning } : {}),
      ...(o.keepTornWalTail ? { keepTornTail: true } : {}),
      ...(o.walDiesWhenFull ? { dieWhenFull: true } : {}),
      // A full disk stalls this node's log (it acknowledges nothing meanwhile), never ends it.
      onFull: (e) => o.onWarning?.(`the data dir is full (${(e as NodeJS.ErrnoException).code}: ${e.message}): this node writes nothing to its Raft log, and so acknowledges nothing, until space returns; trying again every second`),
      onSpace: (ms) => o.onWarning?.(`the data dir has space again after ${(ms / 1000).toFixed(1)} s: the Raft log goes on`),
      onRotate: () => [encodeRecord({ entries: [], hardState: storage.initialState().hardState, snapshot: storage.snapshot().meta })],
    });
    const segmentMax = new Map<number, number>();
    // Rebuild the log: the snapshot first, then every record after it, in order.
    let snapIndex = 0;
    if (snap) {
      const s = decodeSnapshotFile(snap.data);
      storage.applySnapshot(s);
      o.sm.restore(s.data, s.meta.index);
      snapIndex = s.meta.index;
    }
    for (const rec of records) {
      const r = decodeRecord(rec.data);
      if (r.snapshot && r.snapshot.index > storage.lastIndex()) {
        // A snapshot received from the leader: its data is in the snapshot files (newest one).
        if (!snap || decodeSnapshotFile(snap.data).meta.index < r.snapshot.index) {
          throw new Error(`refusing to start: the WAL names a snapshot at index ${r.snapshot.index} but no such snapshot file survives`);
        }
      }
      const fresh = r.entries.filter((e) => e.index > storage.snapshot().meta.index);
      if (fresh.length > 0) storage.append(fresh);
      if (r.hardState) storage.setHardState(r.hardState);
      const max = r.entries.length ? r.entries[r.entries.length - 1]!.index : 0;
      segmentMax.set(rec.seq, Math.max(segmentMax.get(rec.seq) ?? 0, max));
    }
    if (o.bootstrap && storage.lastIndex() === 0 && storage.initialState().hardState.term === 0) {
      const data = o.sm.snapshot();
      storage.bootstrap(o.bootstrap, data);
      const s = storage.snapshot();
      await writeSnapshot(join(o.dir, 'snap'), { index: s.meta.index, term: s.meta.term }, encodeSnapshotFile(s));
      await wal.append(encodeRecord({ entries: [], hardState: storage.initialState().hardState, snapshot: s.meta }));
      o.sm.restore(s.data, s.meta.index);
      snapIndex = s.meta.index;
    }
    const raw = new RawNode(
      {
        id: o.id,
        electionTick: o.electionTick ?? ELECTION_TICK,
        heartbeatTick: o.heartbeatTick ?? 1,
        preVote: true,
        checkQuorum: true,
        maxInflight: o.maxInflight ?? 256,
        maxSizePerMsg: o.maxSizePerMsg ?? 1024 * 1024,
        applied: snapIndex,
        rand: o.random ?? Math.random,
      },
      storage,
    );
    const node = new RaftNode(o, raw, storage, wal, snapIndex, raw.confState());
    node.segmentMax = segmentMax;
    node.recoveredAt = storage.initialState().hardState.commit;
    node.persisted = storage.lastIndex();
    o.transport.onReceive((from, bytes) => node.receive(from, bytes));
    o.transport.onUnreachable((peer) => node.unreachable(peer));
    node.ticker = setInterval(() => node.tick(), o.tickMs ?? TICK_MS);
    node.ticker.unref();
    // The first Ready (and its callbacks) only once the caller holds the node.
    setImmediate(() => node.kick());
    return node;
  }

  // --- the API the node's backend uses ---

  get id(): string {
    return this.o.id;
  }
  get term(): number {
    return this.raw.status().term;
  }
  get commitIndex(): number {
    return this.raw.status().commit;
  }
  get appliedIndex(): number {
    return this.applied;
  }
  get leader(): string | null {
    return this.leaderId;
  }
  get isLeader(): boolean {
    return this.role === 'leader';
  }
  get currentRole(): Role {
    return this.role;
  }
  get membership(): ConfState {
    return this.conf;
  }
  status() {
    return this.raw.status();
  }
  /** Writes, fsyncs and records of the WAL: records per fsync shows the group commit at work. */
  get walStats(): { writes: number; fsyncs: number; records: number; bytes: number; entries: number } {
    return { ...this.wal.stats, entries: this.entriesPersisted };
  }
  private entriesPersisted = 0;

  /** The log up to here is on this node's disk (fsynced): what this node acknowledges holding. */
  get persistedIndex(): number {
    return this.persisted;
  }
  private persisted = 0;

  /** Snapshots sent to followers: transfers started, and how they ended. */
  get snapshotTransfers(): { started: number; succeeded: number; failed: number; skipped: number } {
    return { ...this.snapshotStats };
  }
  private readonly snapshotStats = { started: 0, succeeded: 0, failed: 0, skipped: 0 };
  private readonly snapshotsInFlight = new Set<string>();

  /** Appends `data` to the log; resolves with the state machine's result once it is applied here. */
  propose(data: Uint8Array): Promise<{ index: number; result: unknown }> {
    return this.submit(() => this.raw.propose(data));
  }

  /** A membership change; resolves with the configuration once it is applied here. */
  proposeConfChange(cc: ConfChange): Promise<{ index: number; result: unknown }> {
    return this.submit(() => this.raw.proposeConfChange(cc));
  }

  private submit(append: () => void): Promise<{ index: number; result: unknown }> {
    const stopped = this.stoppedError();
    if (stopped) return Promise.reject(stopped);
    try {
      append();
    } catch (e) {
      if (e instanceof RaftError && (e.code === 'not-leader' || e.code === 'transferring')) return Promise.reject(new NotLeaderError(this.leaderId));
      return Promise.reject(e);
    }
    const index = this.raw.log().lastIndex();
    const term = this.raw.term;
    const p = new Promise<{ index: number; result: unknown }>((resolve, reject) => this.pending.set(index, { term, resolve, reject }));
    this.kick();
    return p;
  }

  /**
   * A linearizable read barrier (ReadIndex): resolves once this node's state machine reflects
   * every write committed before the call. Works on the leader; followers forward writes anyway.
   */
  async readBarrier(timeoutMs = 5000): Promise<void> {
    const stopped = this.stoppedError();
    if (stopped) throw stopped;
    const ctx = randomUUID();
    const index = await new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => {
        this.reads.delete(ctx);
        reject(new NotLeaderError(this.leaderId));
      }, timeoutMs);
      this.reads.set(ctx, {
        resolve: (i) => {
          clearTimeout(t);
          resolve(i);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      });
      try {
        this.raw.readIndex(ctx);
      } catch {
        clearTimeout(t);
        this.reads.delete(ctx);
        reject(new NotLeaderError(this.leaderId));
        return;
      }
      this.kick();
    });
    if (this.applied >= index) return;
    await new Promise<void>((resolve) => this.readWaiters.push({ index, resolve }));
  }

  /**
   * Resolves once every entry this node knew to be committed when it opened is applied: before
   * that, the state machine shows an older state than the node acknowledged before it stopped.
   */
  recovered(): Promise<void> {
    if (this.applied >= this.recoveredAt) return Promise.resolve();
    return new Promise((r) => this.recoveredWaiters.push(r));
  }

  /**
   * When this node last knew itself part of a working cluster: now if it leads (check-quorum
   * makes a leader without a quorum step down), else when it last heard from its leader.
   */
  /** Since when the log waits for disk space (ms since the epoch), or undefined. */
  get diskFullSince(): number | undefined {
    return this.wal.fullSinceMs;
  }

  get lastClusterContact(): number {
    return this.role === 'leader' ? Date.now() : this.leaderContactAt;
  }

  /** A follower that heard nothing from its leader this long starts an election. */
  get electionTimeoutMs(): number {
    return (this.o.tickMs ?? TICK_MS) * (this.o.electionTick ?? ELECTION_TICK);
  }

  /** Starts an election now (a new one-voter cluster need not wait out a timeout). */
  campaign(): void {
    this.raw.campaign();
    this.kick();
  }

  transferLeadership(to: string): void {
    this.raw.transferLeadership(to);
    this.kick();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.ticker);
    while (this.running) await new Promise((r) => setTimeout(r, 5));
    for (const p of this.pending.values()) p.reject(new NodeStoppedError('the node is shutting down'));
    for (const [ctx, r] of this.reads) (this.reads.delete(ctx), r.reject(new NodeStoppedError('the node is shutting down')));
    this.pending.clear();
    await this.o.transport.close();
    await this.wal.close();
  }

  private stoppedError(): NodeStoppedError | null {
    if (this.failure) return new NodeStoppedError(`the Raft node stopped after a failure: ${this.failure.message}`, this.failure);
    if (this.closed) return new NodeStoppedError('the node is shutting down');
    return null;
  }

  // --- the loop ---

  private tick(): void {
    if (this.closed) return;
    this.raw.tick();
    this.kick();
  }

  private receive(from: string, bytes: Uint8Array): void {
    if (this.closed) return;
    let m: Message;
    try {
      m = decodeMessage(bytes);
    } catch {
      return; // garbage from a peer is dropped, not fatal
    }
    if (m.from !== from) return; // a member may only speak for itself
    if (m.from === this.leaderId) this.leaderContactAt = Date.now();
    this.raw.step(m);
    this.kick();
  }

  /** The transport could not reach `peer`: the core stops pipelining to it and probes instead. */
  private unreachable(peer: string): void {
    if (this.closed || this.failure) return;
    this.raw.reportUnreachable(peer);
    this.kick();
  }

  /**
   * Hands a MsgSnap to the transport and reports the outcome to the core: on success it waits
   * for the follower's answer, on failure it probes again, which sends a new snapshot if the
   * follower still needs one. One transfer per peer at a time: the core may ask for another
   * while one is still under way (it gives up on an unreported snapshot after a few election
   * timeouts, and a big one may take longer than that); the one under way is let finish, and
   * its report sets the core going again.
   */
  private sendSnapshot(m: Message): void {
    if (this.snapshotsInFlight.has(m.to)) {
      this.snapshotStats.skipped++;
      return;
    }
    this.snapshotsInFlight.add(m.to);
    this.snapshotStats.started++;
    void this.o.transport.sendSnapshot(m.to, encodeMessage(m)).then((ok) => {
      this.snapshotsInFlight.delete(m.to);
      if (ok) this.snapshotStats.succeeded++;
      else this.snapshotStats.failed++;
      if (this.closed || this.failure) return;
      if (!ok) this.o.onWarning?.(`snapshot at index ${m.snapshot?.meta.index} to ${m.to} did not get through; the leader will send one again`);
      this.raw.reportSnapshot(m.to, ok);
      this.kick();
    });
  }

  private kick(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.closed || this.failure) return;
    this.running = true;
    void this.loop().finally(() => {
      this.running = false;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
  }

  private async loop(): Promise<void> {
    try {
      while (!this.closed && this.raw.hasReady()) await this.handle(this.raw.ready());
    } catch (e) {
      // A failed fsync leaves the disk in an unknown state: stop taking part (etcd panics).
      this.failure = e instanceof Error ? e : new Error(String(e));
      this.o.onWarning?.(`raft stopped: ${this.failure.message}`);
      for (const p of this.pending.values()) p.reject(this.stoppedError()!);
      this.pending.clear();
    }
  }

  private async handle(rd: Ready): Promise<void> {
    if (rd.softState) {
      const changed = rd.softState.role !== this.role || rd.softState.leader !== this.leaderId;
      this.role = rd.softState.role;
      this.leaderId = rd.softState.leader;
      if (changed) this.o.onRoleChange?.(this.role, this.leaderId, this.raw.status().term);
      if (this.role !== 'leader') for (const [ctx, r] of this.reads) (this.reads.delete(ctx), r.reject(new NotLeaderError(this.leaderId)));
    }

    // Committed entries that are already on this node's disk can be applied while this Ready's
    // new entries are being written: waiting for that fsync would only add its latency to every
    // write (the Raft thesis, 10.2.1). A one-voter cluster commits its entries in the same Ready
    // they are written in, so there it stays in order.
    const stable = this.storage.lastIndex();
    const overlap = !rd.snapshot && rd.committedEntries.every((e) => e.index <= stable);
    // A leader sends its appends while it writes them itself (the Raft thesis, 10.2.1, as etcd
    // does): its own disk and the followers' then take one fsync's time, not two. Nothing about a
    // commit leaves this node, and nothing is applied, before this Ready's write is durable: the
    // next Ready waits for this one.
    const early = this.role === 'leader';
    if (early) this.send(rd.messages);
    const persisting = this.persist(rd);
    const confApplied: Entry[] = [];
    const applyCommitted = () => {
      for (const e of rd.committedEntries) {
        if (e.type === 'conf') confApplied.push(e);
        else this.apply(e);
      }
    };
    if (overlap) applyCommitted();
    await persisting;

    // 2. A follower sends only now, when everything it acknowledges is on disk.
    if (!early) this.send(rd.messages);

    // 3. Apply (if not done above).
    if (rd.snapshot) {
      this.o.sm.restore(rd.snapshot.data, rd.snapshot.meta.index);
      this.applied = rd.snapshot.meta.index;
      this.snapshotIndex = rd.snapshot.meta.index;
      this.setConf(rd.snapshot.meta.conf);
      for (const [index, p] of this.pending) if (index <= this.applied) (this.pending.delete(index), p.reject(new ProposalDroppedError('replaced by a snapshot from the leader')));
    }
    if (!overlap) applyCommitted();
    for (const rs of rd.readStates) {
      const r = this.reads.get(rs.ctx);
      if (r) {
        this.reads.delete(rs.ctx);
        r.resolve(rs.index);
      }
    }

    // 4. Advance: the core applies the conf changes among the committed entries itself.
    this.raw.advance();
    if (confApplied.length > 0) {
      const cs = this.raw.confState();
      this.setConf(cs);
      for (const e of confApplied) this.settle(e, cs);
    }
    this.releaseReads();
    if (rd.committedEntries.length > 0 || rd.snapshot) this.o.onApplied?.(this.applied);
    await this.maybeSnapshot();
  }

  /** Sends a Ready's messages, batched per peer. Snapshots go on transfers of their own, beside the other messages (see snapshot-transfer.ts). */
  private send(messages: readonly Message[]): void {
    const byPeer = new Map<string, Uint8Array[]>();
    for (const m of messages) {
      if (m.type === 'MsgSnap') {
        this.sendSnapshot(m);
        continue;
      }
      const list = byPeer.get(m.to) ?? [];
      list.push(encodeMessage(m));
      byPeer.set(m.to, list);
    }
    for (const [to, msgs] of byPeer) this.o.transport.send(to, msgs);
  }

  /** 1. Persist: the snapshot file first, then one WAL record with the entries and hard state. */
  private async persist(rd: Ready): Promise<void> {
    if (rd.snapshot) {
      await writeSnapshot(join(this.o.dir, 'snap'), { index: rd.snapshot.meta.index, term: rd.snapshot.meta.term }, encodeSnapshotFile(rd.snapshot));
    }
    if (rd.entries.length > 0 || rd.hardState || rd.snapshot) {
      // Entries, votes and terms must be on disk before anything leaves; a commit index alone may
      // be lost (it is learnt again from the leader), so it rides along with the next fsync.
      const { seq } = await this.wal.appendMany([encodeRecord({ entries: rd.entries, ...(rd.hardState ? { hardState: rd.hardState } : {}), ...(rd.snapshot ? { snapshot: rd.snapshot.meta } : {}) })], { sync: rd.mustSync });
      const max = rd.entries.length ? rd.entries[rd.entries.length - 1]!.index : 0;
      this.segmentMax.set(seq, Math.max(this.segmentMax.get(seq) ?? 0, max));
      this.entriesPersisted += rd.entries.length;
      if (rd.entries.length > 0) this.persisted = rd.entries[rd.entries.length - 1]!.index;
      else if (rd.snapshot) this.persisted = rd.snapshot.meta.index;
    }
    if (rd.snapshot) this.storage.applySnapshot(rd.snapshot);
    if (rd.entries.length > 0) this.storage.append(rd.entries);
    if (rd.hardState) this.storage.setHardState(rd.hardState);
  }

  private apply(e: Entry): void {
    let result: unknown;
    if (e.data.length > 0) {
      // The state machine turns bad commands into results; a throw here is a bug, kept loud.
      try {
        result = this.o.sm.apply(e.data, e.index);
      } catch (err) {
        this.o.onWarning?.(`state machine threw at index ${e.index}: ${(err as Error).message}`);
        result = err;
      }
    }
    this.settle(e, result);
  }

  /** The entry at e.index is applied: answer whoever proposed it. */
  private settle(e: Entry, result: unknown): void {
    this.applied = Math.max(this.applied, e.index);
    const p = this.pending.get(e.index);
    if (p) {
      this.pending.delete(e.index);
      if (p.term === e.term) p.resolve({ index: e.index, result });
      else p.reject(new ProposalDroppedError(`the entry at index ${e.index} was replaced by a new leader; it may be retried`));
    }
    // Proposals at indices below this one that never showed up were dropped by a leader change.
    for (const [index, q] of this.pending) if (index < e.index) (this.pending.delete(index), q.reject(new ProposalDroppedError('lost in a leader change; it may be retried')));
  }

  private releaseReads(): void {
    if (this.recoveredWaiters.length > 0 && this.applied >= this.recoveredAt) for (const w of this.recoveredWaiters.splice(0)) w();
    for (let i = this.readWaiters.length - 1; i >= 0; i--) {
      const w = this.readWaiters[i]!;
      if (this.applied >= w.index) {
        this.readWaiters.splice(i, 1);
        w.resolve();
      }
    }
  }

  private setConf(cs: ConfState): void {
    this.conf = cs;
    this.o.onConfChange?.(cs);
  }

  private async maybeSnapshot(): Promise<void> {
    const every = this.o.snapshotEvery ?? 10_000;
    if (this.applied - this.snapshotIndex < every || Date.now() < this.snapshotAfter) return;
    const index = this.applied;
    const snap = this.storage.createSnapshot(index, this.conf, this.o.sm.snapshot());
    try {
      await writeSnapshot(join(this.o.dir, 'snap'), { index, term: snap.meta.term }, encodeSnapshotFile(snap));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOSPC' && code !== 'EDQUOT') throw e;
      // A snapshot only saves replay time: without room for one, the log goes on, and it is
      // tried again a little later.
      this.snapshotAfter = Date.now() + SNAPSHOT_RETRY_MS;
      this.o.onWarning?.(`no room for a snapshot at index ${index} (${code}); trying again in ${SNAPSHOT_RETRY_MS / 1000} s`);
      return;
    }
    this.prevSnapshotIndex = this.snapshotIndex;
    this.snapshotIndex = index;
    const keep = this.o.keepBehind ?? 5_000;
    if (index - keep > this.storage.firstIndex()) this.storage.compact(index - keep);
    // Segments whose entries all lie below what the log keeps, and below the previous snapshot
    // (which a restart falls back to if the latest snapshot file is damaged), can go.
    const floor = Math.min(this.storage.firstIndex() - 1, this.prevSnapshotIndex);
    await this.wal.rotate();
    let below = this.wal.currentSeq;
    for (const [seq, max] of this.segmentMax) if (max > floor) below = Math.min(below, seq);
    await this.wal.removeSegmentsBelow(below);
    for (const seq of [...this.segmentMax.keys()]) if (seq < below) this.segmentMax.delete(seq);
  }
}

function encodeSnapshotFile(s: { meta: unknown; data: Uint8Array }): Uint8Array {
  const meta = Buffer.from(JSON.stringify(s.meta));
  const head = Buffer.alloc(4);
  head.writeUInt32LE(meta.length, 0);
  return Buffer.concat([head, meta, s.data]);
}

function decodeSnapshotFile(b: Uint8Array): { meta: { index: number; term: number; conf: ConfState }; data: Uint8Array } {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const n = buf.readUInt32LE(0);
  return { meta: JSON.parse(buf.subarray(4, 4 + n).toString()) as { index: number; term: number; conf: ConfState }, data: Uint8Array.from(buf.subarray(4 + n)) };
}

