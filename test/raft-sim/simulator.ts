import {
  MemoryStorage,
  RaftError,
  RawNode,
  type Bugs,
  type ConfChange,
  type Config,
  type Entry,
  type Message,
  type Ready,
} from '../../src/raft/core/index.js';
import { EventHeap } from './heap.js';
import { InvariantViolation, SafetyChecker } from './invariants.js';
import { decodeCommand, encodeCommand, KvStore, type KvCommand } from './kv.js';
import { checkHistory, describeOps, type Operation } from './linearizability.js';
import { describeProfile, profileFor, type Profile } from './profile.js';
import { Rng } from './prng.js';

export { describeProfile, profileFor, type Profile };

// A deterministic simulation of a Raft cluster: N RawNodes, a network that drops, delays,
// reorders, duplicates and partitions (also one way), crashes that lose everything not yet
// persisted, membership changes, log compaction, and clients running a key-value workload through
// the leader. Everything random comes from one seed, so a seed replays exactly.
//
// The driver contract is modelled as the real node loop must follow it: a node takes a Ready,
// persists it (taking `persistDelay` of simulated time, while the node keeps stepping messages),
// and only then sends its messages, applies its committed entries and calls advance(). A crash
// before the persist completes loses the whole Ready; a crash can also hit right after the persist,
// before anything was sent.

export interface SimOptions {
  seed: number;
  /** Overrides of the seed-derived profile. */
  profile?: Partial<Profile>;
  bugs?: Bugs;
  /** Print every event as it happens. */
  log?: (line: string) => void;
}

export interface SimStats {
  steps: number;
  time: number;
  leaders: number;
  committed: number;
  messages: number;
  dropped: number;
  crashes: number;
  snapshotsSent: number;
  /** Conf entries applied, summed over nodes. */
  confChanges: number;
  /** Conf changes the leader accepted, by kind. */
  confProposed: number;
  jointChanges: number;
  leaderRemovals: number;
  promotions: number;
  readds: number;
  transfers: number;
  ops: number;
  opsOk: number;
  opsUnknown: number;
  reads: number;
  explored: number;
}

export interface SimResult {
  seed: number;
  ok: boolean;
  failure?: string;
  /** A hash of every event and its outcome: equal for equal seeds. */
  traceHash: string;
  stats: SimStats;
  profile: Profile;
}

// ---- events ----------------------------------------------------------------------------------

interface Request {
  client: number;
  seq: number;
  kind: 'put' | 'cas' | 'get';
  cmd?: KvCommand;
  key: string;
}

interface Reply {
  seq: number;
  kind: 'ok' | 'redirect';
  leader?: string | null;
  value?: string | null | boolean;
}

type EventBody =
  | { kind: 'tick'; node: string; inc: number }
  | { kind: 'deliver'; msg: Message }
  | { kind: 'persist'; node: string; inc: number }
  | { kind: 'snapStatus'; node: string; inc: number; to: string; ok: boolean }
  | { kind: 'request'; node: string; req: Request }
  | { kind: 'reply'; client: number; reply: Reply }
  | { kind: 'clientTimeout'; client: number; opSeq: number; attempt: number }
  | { kind: 'clientRetry'; client: number; opSeq: number; attempt: number }
  | { kind: 'clientNext'; client: number }
  | { kind: 'chaos' }
  | { kind: 'restart'; node: string }
  | { kind: 'heal'; fault: number }
  | { kind: 'leaderFault'; node: string; inc: number; term: number; isolate: boolean };

type SimEvent = EventBody & { time: number; seq: number };

// ---- nodes and clients -----------------------------------------------------------------------

interface PendingRead {
  client: number;
  seq: number;
  key: string;
  index: number;
}

class SimNode {
  readonly storage = new MemoryStorage();
  raw: RawNode | undefined;
  kv: KvStore | undefined;
  up = false;
  /** Bumped at every start and crash, so events of an earlier life are recognised. */
  inc = 0;
  started = false;
  /** Removed from the cluster and shut down; only a membership change brings it back. */
  retired = false;
  inflight: Ready | undefined;
  /** The last term this node was seen leading, to notice new leaderships. */
  ledTerm = -1;
  /** Its commit index when last seen leading, to notice commits. */
  ledCommit = 0;
  readonly writes = new Map<string, number>();
  readonly reads = new Map<string, PendingRead>();
  waitingReads: PendingRead[] = [];

  constructor(
    readonly id: string,
    readonly tickEvery: number,
    readonly rng: Rng,
  ) {}
}

interface ClientOp {
  op: Operation;
  attempt: number;
  firstSent: number;
  cmd?: KvCommand;
}

interface Client {
  idx: number;
  name: string;
  seq: number;
  target: string;
  current: ClientOp | undefined;
  lastSeen: Map<string, string | null>;
}

const MSG_CODES: Record<string, number> = {
  MsgApp: 1,
  MsgAppResp: 2,
  MsgVote: 3,
  MsgVoteResp: 4,
  MsgPreVote: 5,
  MsgPreVoteResp: 6,
  MsgHeartbeat: 7,
  MsgHeartbeatResp: 8,
  MsgSnap: 9,
  MsgTimeoutNow: 10,
  MsgReadIndex: 11,
  MsgReadIndexResp: 12,
  MsgTransferLeader: 13,
};

class Failure extends Error {}

const RECENT = 40;
const EVENT_NAMES: Record<number, string> = {
  1: 'tick',
  2: 'deliver',
  3: 'persist (entries, hard state term, commit, messages)',
  4: 'snapshot-status',
  5: 'client request (client, seq)',
  6: 'client reply (client, seq, ok)',
  10: 'start',
  11: 'crash',
  12: 'compact',
  20: 'heal',
  30: 'chaos',
};

export class Simulation {
  readonly profile: Profile;
  private readonly rng: Rng;
  private readonly nodes = new Map<string, SimNode>();
  private readonly nodeList: SimNode[] = [];
  private readonly clients: Client[] = [];
  private readonly queue = new EventHeap<SimEvent>();
  private readonly checker = new SafetyChecker();
  private readonly history: Operation[] = [];
  /** Reads whose client gave up: they had no effect, so they leave the history. */
  private readonly abandoned = new Set<number>();
  /** Writes given up on (outcome unknown), per key. */
  private readonly unknownByKey = new Map<string, number>();
  /** Network faults in force, each a set of blocked one-way links "from>to", healed on its own. */
  private readonly faults = new Map<number, Set<string>>();
  private faultId = 0;
  private now = 0;
  private seq = 0;
  private clock = 0;
  private stepCount = 0;
  private chaosOn = true;
  private opsIssued = 0;
  private loss: number;
  private duplicate: number;
  private latency: [number, number];
  private h1 = 0x811c9dc5;
  private h2 = 0x12345678;
  private readonly recent: [number, number, number, (number | string)[], Message | undefined][] = [];
  private recentAt = 0;
  private readonly stats: SimStats = {
    steps: 0,
    time: 0,
    leaders: 0,
    committed: 0,
    messages: 0,
    dropped: 0,
    crashes: 0,
    snapshotsSent: 0,
    confChanges: 0,
    confProposed: 0,
    jointChanges: 0,
    leaderRemovals: 0,
    promotions: 0,
    readds: 0,
    transfers: 0,
    ops: 0,
    opsOk: 0,
    opsUnknown: 0,
    reads: 0,
    explored: 0,
  };

  constructor(private readonly opts: SimOptions) {
    this.profile = { ...profileFor(opts.seed), ...opts.profile };
    this.rng = new Rng(opts.seed);
    this.loss = this.profile.loss;
    this.duplicate = this.profile.duplicate;
    this.latency = this.profile.latency;
    const p = this.profile;
    const voters: string[] = [];
    for (let i = 1; i <= p.nodes + p.spares; i++) {
      const id = `n${i}`;
      const node = new SimNode(id, this.rng.range(p.tickEvery[0], p.tickEvery[1]), this.rng.fork());
      this.nodes.set(id, node);
      this.nodeList.push(node);
      if (i <= p.nodes) voters.push(id);
    }
    const initial = new KvStore().snapshot();
    for (const id of voters) this.nodes.get(id)!.storage.bootstrap({ voters, learners: [] }, initial);
    this.checker.seedCommitted(1, 1);
    for (const id of voters) this.start(this.nodes.get(id)!);
    for (let i = 0; i < p.clients; i++) {
      this.clients.push({ idx: i, name: `c${i}`, seq: 0, target: this.rng.pick(voters), current: undefined, lastSeen: new Map() });
      this.schedule(this.rng.range(0, 50), { kind: 'clientNext', client: i });
    }
    this.schedule(this.rng.range(p.chaosEvery[0], p.chaosEvery[1]), { kind: 'chaos' });
  }

  run(): SimResult {
    try {
      this.loop(this.profile.steps);
      this.quiesce();
      this.checkLinearizable();
      return this.result(undefined);
    } catch (err) {
      if (err instanceof InvariantViolation || err instanceof Failure) return this.result(err.message);
      const e = err instanceof Error ? (err.stack ?? err.message) : String(err);
      return this.result(`core or simulator threw: ${e}`);
    }
  }

  private result(failure: string | undefined): SimResult {
    this.stats.steps = this.stepCount;
    this.stats.time = this.now;
    this.stats.leaders = this.checker.stats.leaders;
    this.stats.committed = this.checker.committedIndex;
    const r: SimResult = {
      seed: this.opts.seed,
      ok: failure === undefined,
      traceHash: `${(this.h1 >>> 0).toString(16).padStart(8, '0')}${(this.h2 >>> 0).toString(16).padStart(8, '0')}`,
      stats: this.stats,
      profile: this.profile,
    };
    if (failure !== undefined) {
      const recent = [...this.recent.slice(this.recentAt), ...this.recent.slice(0, this.recentAt)]
        .map(([t, step, kind, xs, m]) => `    t=${t} #${step} ${m ? `deliver ${describeMsg(m)}` : `${EVENT_NAMES[kind] ?? kind} ${xs.join(' ')}`}`)
        .join('\n');
      r.failure = `${failure}\n  at step ${this.stepCount}, time ${this.now}\n  last events (replay the seed for the full log):\n${recent}`;
    }
    return r;
  }

  // ---- the event loop ------------------------------------------------------------------------

  private loop(maxSteps: number, until?: () => boolean, deadline = Infinity): boolean {
    for (let i = 0; i < maxSteps && this.now <= deadline; i++) {
      if (until !== undefined && i % 16 === 0 && until()) return true;
      const ev = this.queue.pop();
      if (ev === undefined) return until?.() ?? true;
      this.now = ev.time;
      this.stepCount++;
      this.handle(ev);
      this.checker.afterStep(this.nodeList);
    }
    return until?.() ?? true;
  }

  private schedule(delay: number, body: EventBody): void {
    // Bodies are fresh literals: stamp them in place rather than copying.
    const ev = body as SimEvent;
    ev.time = this.now + delay;
    ev.seq = this.seq++;
    this.queue.push(ev);
  }

  private handle(ev: SimEvent): void {
    switch (ev.kind) {
      case 'tick': {
        const n = this.nodes.get(ev.node)!;
        if (!n.up || n.inc !== ev.inc) return;
        this.trace(1, n.id);
        n.raw!.tick();
        this.afterNodeEvent(n);
        this.schedule(n.tickEvery, { kind: 'tick', node: n.id, inc: n.inc });
        return;
      }
      case 'deliver':
        this.deliver(ev.msg);
        return;
      case 'persist': {
        const n = this.nodes.get(ev.node)!;
        if (n.up && n.inc === ev.inc) this.persist(n);
        return;
      }
      case 'snapStatus': {
        const n = this.nodes.get(ev.node)!;
        if (!n.up || n.inc !== ev.inc) return;
        this.trace(4, n.id, ev.to, ev.ok ? 1 : 0);
        n.raw!.reportSnapshot(ev.to, ev.ok);
        this.afterNodeEvent(n);
        return;
      }
      case 'request':
        this.request(this.nodes.get(ev.node)!, ev.req);
        return;
      case 'reply':
        this.reply(this.clients[ev.client]!, ev.reply);
        return;
      case 'clientTimeout':
        this.clientTimeout(this.clients[ev.client]!, ev.opSeq, ev.attempt);
        return;
      case 'clientRetry': {
        const c = this.clients[ev.client]!;
        if (c.current !== undefined && c.seq === ev.opSeq && c.current.attempt === ev.attempt) this.retry(c);
        return;
      }
      case 'clientNext':
        this.startOp(this.clients[ev.client]!);
        return;
      case 'chaos':
        if (!this.chaosOn) return;
        this.chaos();
        this.schedule(this.rng.range(this.profile.chaosEvery[0], this.profile.chaosEvery[1]), { kind: 'chaos' });
        return;
      case 'restart': {
        const n = this.nodes.get(ev.node)!;
        if (n.up || n.retired) return;
        this.start(n);
        return;
      }
      case 'heal':
        if (this.faults.delete(ev.fault)) this.log(() => `heal fault ${ev.fault}`);
        return;
      case 'leaderFault': {
        const n = this.nodes.get(ev.node)!;
        if (!this.chaosOn || !n.up || n.inc !== ev.inc || n.raw!.role !== 'leader' || n.raw!.term !== ev.term) return;
        if (ev.isolate) this.addFault(this.isolation(n.id), `isolate leader ${n.id}`);
        else this.crash(n, this.rng.range(100, 1500));
        return;
      }
    }
  }

  // ---- nodes ---------------------------------------------------------------------------------

  private config(n: SimNode): Config {
    const p = this.profile;
    const cfg: Config = {
      id: n.id,
      electionTick: p.electionTick,
      heartbeatTick: p.heartbeatTick,
      preVote: p.preVote,
      checkQuorum: p.checkQuorum,
      maxInflight: p.maxInflight,
      maxSizePerMsg: p.maxSizePerMsg,
      maxCommittedSizePerReady: p.maxCommittedSizePerReady,
      rand: () => n.rng.float(),
    };
    if (this.opts.bugs !== undefined) cfg.bugs = this.opts.bugs;
    return cfg;
  }

  /** Starts (or restarts) a node from what its storage holds: everything it persisted, nothing else. */
  private start(n: SimNode): void {
    n.inc++;
    n.up = true;
    n.started = true;
    n.raw = new RawNode(this.config(n), n.storage);
    const snap = n.storage.snapshot();
    n.kv = KvStore.restore(snap.data, snap.meta.index);
    this.checker.nodeStarted(n.id, n.raw, snap.meta.index);
    this.trace(10, n.id);
    this.log(() => `start ${n.id} (life ${n.inc}) term=${n.raw!.term} last=${n.storage.lastIndex()} snap=${snap.meta.index}`);
    this.schedule(this.rng.range(1, n.tickEvery), { kind: 'tick', node: n.id, inc: n.inc });
    this.afterNodeEvent(n);
  }

  /** Loses everything volatile: the core, the state machine, the Ready being persisted. */
  private crash(n: SimNode, restartAfter: number | undefined): void {
    if (!n.up) return;
    this.stats.crashes++;
    this.trace(11, n.id);
    this.log(() => `crash ${n.id}${n.inflight ? ' (losing an unpersisted Ready)' : ''}`);
    n.up = false;
    n.inc++;
    n.raw = undefined;
    n.kv = undefined;
    n.inflight = undefined;
    n.writes.clear();
    n.reads.clear();
    n.waitingReads = [];
    if (restartAfter !== undefined) this.schedule(restartAfter, { kind: 'restart', node: n.id });
  }

  private downtime(): number {
    return this.rng.chance(0.5) ? this.rng.range(1, 40) : this.rng.range(100, 1500);
  }

  /** The driver loop: take the next Ready as soon as the previous one is done. */
  private afterNodeEvent(n: SimNode): void {
    if (!n.up) return;
    const raw = n.raw!;
    if (raw.role === 'leader') {
      const commit = raw.log().committed;
      if (raw.term !== n.ledTerm) {
        n.ledTerm = raw.term;
        // Cut off (mostly) or crash a new leader before its first entries spread: it is left
        // holding entries nobody else has.
        if (this.chaosOn && this.rng.chance(this.profile.newLeaderFault)) {
          const isolate = this.rng.chance(0.7);
          this.schedule(this.rng.range(0, 20), { kind: 'leaderFault', node: n.id, inc: n.inc, term: raw.term, isolate });
        }
      } else if (commit > n.ledCommit && this.chaosOn && this.rng.chance(this.profile.commitFault)) {
        // Crash a leader that just committed, before it tells anyone.
        this.schedule(this.rng.range(0, 3), { kind: 'leaderFault', node: n.id, inc: n.inc, term: raw.term, isolate: false });
      }
      n.ledCommit = commit;
    }
    if (n.inflight !== undefined || !raw.hasReady()) return;
    const rd = n.raw!.ready();
    n.inflight = rd;
    // The driver may not change what it was handed; freezing makes any aliasing bug throw.
    for (const e of rd.entries) Object.freeze(e);
    const [lo, hi] = this.profile.persistDelay;
    this.schedule(this.rng.range(lo, hi), { kind: 'persist', node: n.id, inc: n.inc });
  }

  private persist(n: SimNode): void {
    const rd = n.inflight!;
    const raw = n.raw!;
    // 1. Persist: snapshot, entries, hard state, as one atomic write.
    if (rd.snapshot !== undefined) n.storage.applySnapshot(rd.snapshot);
    n.storage.append(rd.entries);
    if (rd.hardState !== undefined) n.storage.setHardState(rd.hardState);
    this.trace(3, n.id, rd.entries.length, rd.hardState?.term ?? -1, rd.hardState?.commit ?? -1, rd.messages.length);
    this.log(
      () =>
        `persist ${n.id} ents=${rd.entries.length ? `${rd.entries[0]!.index}..${rd.entries.at(-1)!.index}` : '-'}` +
        `${rd.hardState ? ` hs=(t${rd.hardState.term} v${rd.hardState.vote} c${rd.hardState.commit})` : ''}` +
        `${rd.snapshot ? ` snap=${rd.snapshot.meta.index}` : ''} apply=${rd.committedEntries.length} msgs=${rd.messages.length}`,
    );
    if (this.chaosOn && this.rng.chance(this.profile.crashAfterPersist)) {
      this.crash(n, this.downtime());
      return;
    }
    // 2. Send.
    let granted = false;
    for (const m of rd.messages) {
      this.send(m);
      if (m.type === 'MsgVoteResp' && !m.reject) granted = true;
    }
    if (granted && this.chaosOn && this.rng.chance(this.profile.voteFault)) {
      this.crash(n, this.rng.range(0, 8));
      return;
    }
    // 3. Apply.
    if (rd.snapshot !== undefined) {
      n.kv = KvStore.restore(rd.snapshot.data, rd.snapshot.meta.index);
      this.checker.onSnapshot(n.id, rd.snapshot.meta);
    }
    for (const e of rd.committedEntries) this.apply(n, e);
    for (const rs of rd.readStates) {
      const pr = n.reads.get(rs.ctx);
      if (pr === undefined) continue;
      n.reads.delete(rs.ctx);
      pr.index = rs.index;
      n.waitingReads.push(pr);
    }
    // 4. Advance.
    n.inflight = undefined;
    raw.advance();
    this.maybeCompact(n);
    this.serveReads(n);
    this.afterNodeEvent(n);
  }

  private apply(n: SimNode, e: Entry): void {
    this.checker.onApply(n.id, e);
    const kv = n.kv!;
    kv.applied = e.index;
    if (e.type !== 'normal' || e.data.byteLength === 0) {
      if (e.type === 'conf') this.stats.confChanges++;
      return;
    }
    const cmd = decodeCommand(e.data);
    const { result } = kv.apply(cmd);
    const key = `${cmd.client}:${cmd.seq}`;
    const client = n.writes.get(key);
    if (client !== undefined) {
      n.writes.delete(key);
      this.replyTo(client, { seq: cmd.seq, kind: 'ok', value: result });
    }
  }

  private maybeCompact(n: SimNode): void {
    const kv = n.kv!;
    const s = n.storage;
    if (kv.applied - s.firstIndex() + 1 < this.profile.compactEvery || kv.applied <= s.snapshot().meta.index) return;
    s.createSnapshot(kv.applied, n.raw!.confState(), kv.snapshot());
    s.compact(Math.max(s.firstIndex() - 1, kv.applied - this.profile.compactKeep));
    this.trace(12, n.id, kv.applied);
  }

  private serveReads(n: SimNode): void {
    if (n.waitingReads.length === 0) return;
    const kv = n.kv!;
    const still: PendingRead[] = [];
    for (const r of n.waitingReads) {
      if (kv.applied >= r.index) this.replyTo(r.client, { seq: r.seq, kind: 'ok', value: kv.get(r.key) });
      else still.push(r);
    }
    n.waitingReads = still;
  }

  // ---- network -------------------------------------------------------------------------------

  private linkBlocked(from: string, to: string): boolean {
    if (this.faults.size === 0) return false;
    const link = `${from}>${to}`;
    for (const f of this.faults.values()) if (f.has(link)) return true;
    return false;
  }

  private lat(): number {
    const [lo, hi] = this.latency;
    const d = this.rng.range(lo, hi);
    return this.rng.chance(this.profile.straggler) ? d + this.rng.range(50, 400) : d;
  }

  private send(m: Message): void {
    this.stats.messages++;
    if (m.type === 'MsgSnap') this.stats.snapshotsSent++;
    if (this.rng.chance(this.loss)) {
      this.drop(m);
      return;
    }
    this.schedule(this.lat(), { kind: 'deliver', msg: m });
    if (this.rng.chance(this.duplicate)) this.schedule(this.lat(), { kind: 'deliver', msg: m });
  }

  private drop(m: Message): void {
    this.stats.dropped++;
    // The transport of the sender notices a snapshot stream that failed, and says so.
    if (m.type === 'MsgSnap') this.reportSnap(m, false);
  }

  private reportSnap(m: Message, ok: boolean): void {
    if (!this.profile.reportSnapshots) return;
    const sender = this.nodes.get(m.from)!;
    if (sender.up) this.schedule(this.lat(), { kind: 'snapStatus', node: m.from, inc: sender.inc, to: m.to, ok });
  }

  private deliver(m: Message): void {
    const n = this.nodes.get(m.to);
    if (n === undefined || !n.up || this.linkBlocked(m.from, m.to)) {
      this.drop(m);
      // Sometimes the sender's transport notices (a broken connection) and says so.
      const sender = this.nodes.get(m.from)!;
      if (m.type === 'MsgApp' && sender.up && this.rng.chance(0.2)) {
        sender.raw!.reportUnreachable(m.to);
        this.afterNodeEvent(sender);
      }
      return;
    }
    this.trace(2, n.id, MSG_CODES[m.type] ?? 0, m.term, m.index, m.logTerm, m.commit, m.entries.length, m.reject ? 1 : 0);
    this.recentMsg(m);
    this.log(() => `deliver ${describeMsg(m)}`);
    n.raw!.step(m);
    if (m.type === 'MsgSnap') this.reportSnap(m, true);
    this.afterNodeEvent(n);
  }

  private healAll(): void {
    if (this.faults.size > 0) this.log(() => 'heal all');
    this.faults.clear();
    this.trace(20);
  }

  /** Adds a network fault; it heals on its own after a while. At most two are in force. */
  private addFault(links: Set<string>, what: string): void {
    if (this.faults.size >= 2) this.faults.delete(this.faults.keys().next().value!);
    const id = ++this.faultId;
    this.faults.set(id, links);
    this.log(() => `fault ${id}: ${what}`);
    this.schedule(this.rng.range(50, 1000), { kind: 'heal', fault: id });
  }

  /** Links cutting x off from everyone, both ways. */
  private isolation(x: string): Set<string> {
    const links = new Set<string>();
    for (const y of this.startedIds()) {
      if (y === x) continue;
      links.add(`${x}>${y}`);
      links.add(`${y}>${x}`);
    }
    return links;
  }

  // ---- chaos ---------------------------------------------------------------------------------

  private liveNodes(): SimNode[] {
    return this.nodeList.filter((n) => n.up);
  }

  private startedIds(): string[] {
    return this.nodeList.filter((n) => n.started && !n.retired).map((n) => n.id);
  }

  /** The live leader with the highest term, if any. */
  private leader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const n of this.nodeList) {
      if (n.up && n.raw!.role === 'leader' && (best === undefined || n.raw!.term > best.raw!.term)) best = n;
    }
    return best;
  }

  private chaos(): void {
    const action = this.rng.weighted(this.profile.chaos);
    const ids = this.startedIds();
    switch (action) {
      case 'crash': {
        const live = this.liveNodes();
        if (live.length > 0) this.crash(this.rng.pick(live), this.downtime());
        break;
      }
      case 'crashLeader': {
        const l = this.leader();
        if (l) this.crash(l, this.downtime());
        break;
      }
      case 'partition': {
        const side = new Set(ids.filter(() => this.rng.chance(0.5)));
        const links = new Set<string>();
        for (const a of ids) for (const b of ids) if (side.has(a) !== side.has(b)) links.add(`${a}>${b}`);
        this.addFault(links, `partition {${[...side].join(',')}} | rest`);
        break;
      }
      case 'oneWay': {
        // Asymmetric: x hears everyone but nobody hears x, or the reverse; or a random set of
        // one-way links.
        const x = this.rng.pick(ids);
        const mode = this.rng.int(3);
        const links = new Set<string>();
        for (const y of ids) {
          if (y === x) continue;
          if (mode === 0) links.add(`${x}>${y}`);
          else if (mode === 1) links.add(`${y}>${x}`);
          else {
            if (this.rng.chance(0.4)) links.add(`${x}>${y}`);
            const z = this.rng.pick(ids);
            if (z !== y && this.rng.chance(0.3)) links.add(`${y}>${z}`);
          }
        }
        this.addFault(links, `one-way faults around ${x} (${['not heard', 'deaf', 'random'][mode]})`);
        break;
      }
      case 'isolate': {
        // Mostly the leader: it keeps taking writes from clients that can still reach it.
        const l = this.rng.chance(0.6) ? this.leader() : undefined;
        const x = l?.id ?? this.rng.pick(ids);
        this.addFault(this.isolation(x), `isolate ${x}`);
        break;
      }
      case 'heal':
        this.healAll();
        break;
      case 'transfer': {
        const l = this.leader();
        if (!l) break;
        const voters = l.raw!.confState().voters.filter((v) => v !== l.id);
        if (voters.length === 0) break;
        const to = this.rng.pick(voters);
        this.stats.transfers++;
        this.log(() => `transfer leadership ${l.id} -> ${to}`);
        l.raw!.transferLeadership(to);
        this.afterNodeEvent(l);
        break;
      }
      case 'reconfigure':
        this.reconfigure();
        break;
      case 'network': {
        this.loss = this.rng.pick([0, 0.01, 0.05, 0.2]);
        this.duplicate = this.rng.pick([0, 0.02, 0.1]);
        this.latency = this.rng.pick<[number, number]>([
          [1, 3],
          [1, 10],
          [5, 40],
        ]);
        break;
      }
      case 'idle':
        break;
    }
    this.trace(30, action);
  }

  /**
   * Shuts down nodes that are no longer members, as an operator would once the removal is known
   * everywhere: every member of the leader's configuration runs and has applied that configuration
   * (until then the others may still need the removed node's vote).
   */
  private retireRemoved(l: SimNode): void {
    const cs = l.raw!.confState();
    if ((cs.votersOutgoing ?? []).length > 0) return;
    const members = [...cs.voters, ...cs.learners];
    const want = JSON.stringify(cs);
    for (const id of members) {
      const n = this.nodes.get(id)!;
      if (!n.up || JSON.stringify(n.raw!.confState()) !== want) return;
    }
    for (const n of this.nodeList) {
      if (n.started && !n.retired && !members.includes(n.id)) {
        this.log(() => `retire ${n.id}`);
        this.crash(n, undefined);
        n.retired = true;
      }
    }
  }

  /** Proposes a random membership change through the current leader. */
  private reconfigure(): void {
    const l = this.leader();
    if (!l) return;
    const raw = l.raw!;
    const cs = raw.confState();
    const members = new Set([...cs.voters, ...cs.learners, ...(cs.votersOutgoing ?? [])]);
    if (this.rng.chance(0.5)) this.retireRemoved(l);
    let cc: ConfChange | undefined;
    if (cs.votersOutgoing !== undefined && cs.votersOutgoing.length > 0) {
      cc = { changes: [] };
    } else {
      const outsiders = this.nodeList.filter((n) => !members.has(n.id)).map((n) => n.id);
      const voters = cs.voters;
      const learners = cs.learners;
      const canShrink = voters.length >= 3; // keep at least two voters: never a single-node quorum
      const options: (() => ConfChange)[] = [];
      if (outsiders.length > 0) {
        options.push(() => ({ changes: [{ type: 'addLearner', node: this.rng.pick(outsiders) }] }));
      }
      if (learners.length > 0) {
        options.push(() => ({ changes: [{ type: 'addNode', node: this.rng.pick(learners) }] }));
        options.push(() => ({ changes: [{ type: 'removeNode', node: this.rng.pick(learners) }] }));
      }
      if (canShrink) {
        options.push(() => ({ changes: [{ type: 'removeNode', node: this.rng.pick(voters) }] }));
        options.push(() => ({ changes: [{ type: 'addLearner', node: this.rng.pick(voters) }] }));
        options.push(() => ({ changes: [{ type: 'removeNode', node: l.id }] }));
      }
      if (learners.length > 0 && voters.length >= 2) {
        // Swap a learner in for a voter through a joint configuration.
        options.push(() => ({
          transition: this.rng.pick(['auto', 'implicit', 'explicit'] as const),
          changes: [
            { type: 'addNode', node: this.rng.pick(learners) },
            { type: 'removeNode', node: this.rng.pick(voters) },
          ],
        }));
      }
      if (options.length === 0) return;
      cc = this.rng.pick(options)();
    }
    // A node being added must be running: a spare starts empty, a retired one from its old disk.
    let readd = false;
    for (const c of cc.changes) {
      const n = this.nodes.get(c.node)!;
      if (c.type !== 'removeNode' && !n.up) {
        readd ||= n.started;
        n.retired = false;
        this.start(n);
      }
    }
    const desc = JSON.stringify(cc);
    try {
      raw.proposeConfChange(cc);
      this.log(() => `propose conf change at ${l.id}: ${desc}`);
      const st = this.stats;
      st.confProposed++;
      if (cc.changes.length > 1 || (cc.transition !== undefined && cc.transition !== 'auto')) st.jointChanges++;
      if (cc.changes.some((c) => c.type === 'removeNode' && c.node === l.id)) st.leaderRemovals++;
      if (cc.changes.some((c) => c.type === 'addNode' && cs.learners.includes(c.node))) st.promotions++;
      if (readd) st.readds++;
    } catch (err) {
      if (!(err instanceof RaftError)) throw err;
      this.log(() => `conf change refused at ${l.id}: ${err.message}`);
    }
    this.afterNodeEvent(l);
  }

  // ---- clients -------------------------------------------------------------------------------

  private startOp(c: Client): void {
    if (c.current !== undefined) return;
    if (!this.chaosOn || this.opsIssued >= this.profile.opLimit) return;
    this.opsIssued++;
    const seq = ++c.seq;
    const key = `k${this.rng.int(this.profile.keys)}`;
    const kind = this.rng.weighted({ put: 4, get: 4, cas: 2 });
    const op: Operation = { id: this.history.length, client: c.name, key, kind, call: ++this.clock, ret: Infinity };
    const cur: ClientOp = { op, attempt: 0, firstSent: this.now };
    const value = `${c.name}.${seq}`;
    if (kind === 'put') {
      op.value = value;
      cur.cmd = { client: c.name, seq, kind: 'put', key, value };
    } else if (kind === 'cas') {
      const seen = c.lastSeen.get(key);
      const expected = seen !== undefined && this.rng.chance(0.8) ? seen : null;
      op.value = value;
      op.expected = expected;
      cur.cmd = { client: c.name, seq, kind: 'cas', key, expected, value };
    }
    this.history.push(op);
    this.stats.ops++;
    c.current = cur;
    this.attempt(c);
  }

  private attempt(c: Client): void {
    const cur = c.current!;
    cur.attempt++;
    const req: Request = { client: c.idx, seq: c.seq, kind: cur.op.kind, key: cur.op.key };
    if (cur.cmd !== undefined) req.cmd = cur.cmd;
    this.schedule(this.lat(), { kind: 'request', node: c.target, req });
    this.schedule(this.profile.clientTimeout, { kind: 'clientTimeout', client: c.idx, opSeq: c.seq, attempt: cur.attempt });
  }

  private request(n: SimNode, req: Request): void {
    if (!n.up) return;
    const raw = n.raw!;
    this.trace(5, n.id, req.client, req.seq);
    this.log(() => `request c${req.client}#${req.seq} ${req.kind} ${req.key} at ${n.id}`);
    // Like the API layer, answer with the leader hint at once when the core would refuse anyway
    // (cheaper than letting it throw: the simulator does this thousands of times per seed).
    const leader = raw.role === 'leader';
    if (req.cmd !== undefined ? !leader : !leader && raw.leader === null) {
      this.replyTo(req.client, { seq: req.seq, kind: 'redirect', leader: raw.leader });
      return;
    }
    try {
      if (req.cmd !== undefined) {
        raw.propose(encodeCommand(req.cmd));
        n.writes.set(`${req.cmd.client}:${req.cmd.seq}`, req.client);
      } else {
        const ctx = `${n.id}/${n.inc}/${req.client}/${req.seq}/${this.seq}`;
        raw.readIndex(ctx);
        n.reads.set(ctx, { client: req.client, seq: req.seq, key: req.key, index: 0 });
      }
    } catch (err) {
      if (!(err instanceof RaftError)) throw err;
      this.replyTo(req.client, { seq: req.seq, kind: 'redirect', leader: err.leader });
    }
    this.afterNodeEvent(n);
  }


  private replyTo(client: number, reply: Reply): void {
    this.schedule(this.lat(), { kind: 'reply', client, reply });
  }

  private reply(c: Client, r: Reply): void {
    const cur = c.current;
    if (cur === undefined || r.seq !== c.seq) return; // late answer to an op already settled
    this.trace(6, c.idx, r.seq, r.kind === 'ok' ? 1 : 0);
    this.log(() => `reply c${c.idx}#${r.seq} ${r.kind} ${JSON.stringify(r.kind === 'ok' ? r.value : r.leader)}`);
    if (r.kind === 'redirect') {
      // Follow the hint (mostly), after a short pause so a leaderless cluster is not hammered.
      const hint = r.leader ?? undefined;
      c.target = hint !== undefined && this.rng.chance(0.8) ? hint : this.rng.pick(this.startedIds());
      this.schedule(this.rng.range(2, 20), { kind: 'clientRetry', client: c.idx, opSeq: c.seq, attempt: cur.attempt });
      return;
    }
    cur.op.ret = ++this.clock;
    cur.op.output = r.value;
    if (cur.op.kind === 'get') {
      c.lastSeen.set(cur.op.key, (r.value as string | null) ?? null);
      this.stats.reads++;
    }
    this.stats.opsOk++;
    this.finish(c);
  }

  private clientTimeout(c: Client, seq: number, attempt: number): void {
    const cur = c.current;
    if (cur === undefined || seq !== c.seq || attempt !== cur.attempt) return;
    this.log(() => `timeout c${c.idx}#${seq} attempt ${attempt}`);
    if (this.rng.chance(0.5)) c.target = this.rng.pick(this.startedIds());
    this.retry(c);
  }

  private retry(c: Client): void {
    const cur = c.current!;
    if (this.now - cur.firstSent >= this.profile.clientGiveUp) {
      // Give up on a read: it had no effect, so it leaves the history.
      if (cur.op.kind === 'get') {
        this.abandoned.add(cur.op.id);
        this.finish(c);
        return;
      }
      // A write's outcome would be unknown (it may still commit later). Every unknown outcome
      // multiplies the checker's search, so only a few per key give up; the rest keep retrying
      // under the same id (the session table applies it once) until they learn the outcome.
      const unknown = this.unknownByKey.get(cur.op.key) ?? 0;
      if (unknown < this.profile.maxUnknownPerKey && this.rng.chance(0.5)) {
        this.unknownByKey.set(cur.op.key, unknown + 1);
        this.stats.opsUnknown++;
        this.finish(c);
        return;
      }
    }
    this.attempt(c);
  }

  private finish(c: Client): void {
    c.current = undefined;
    this.schedule(this.rng.range(0, 30), { kind: 'clientNext', client: c.idx });
  }

  // ---- the end -------------------------------------------------------------------------------

  /**
   * Heals everything, restarts every member, and lets the cluster settle: every member must end
   * with the same log committed and applied and the same state (a liveness and convergence check).
   */
  private quiesce(): void {
    this.chaosOn = false;
    this.healAll();
    this.loss = Math.min(this.loss, 0.02);
    this.log(() => 'quiesce');
    // Called every few steps: nudges the cluster (leave a joint config, retire removed nodes,
    // restart members) and says whether it has settled.
    const settled = (): boolean => {
      const l = this.leader();
      if (l === undefined) return false;
      const raw = l.raw!;
      const cs = raw.confState();
      if ((cs.votersOutgoing ?? []).length > 0) {
        // An explicit joint configuration waits for someone to leave it.
        try {
          raw.proposeConfChange({ changes: [] });
          this.afterNodeEvent(l);
        } catch {
          // pending, retried later
        }
        return false;
      }
      const members = [...cs.voters, ...cs.learners];
      // Removed nodes are shut down (once the removal is known everywhere), so that a node that
      // never learned of its removal does not keep disrupting the others with elections.
      this.retireRemoved(l);
      if (!l.up) return false; // it was a removed leader handing over: wait for its successor
      const lastIndex = raw.log().lastIndex();
      if (raw.log().committed !== lastIndex) return false;
      for (const id of members) {
        const n = this.nodes.get(id)!;
        if (!n.up) {
          n.retired = false;
          this.start(n);
          return false;
        }
        if (n.kv!.applied !== lastIndex) return false;
      }
      return this.clients.every((c) => c.current === undefined);
    };
    if (!this.loop(this.profile.quiesceSteps, settled, this.now + this.profile.quiesceTime)) {
      const l = this.leader();
      const view = this.nodeList
        .filter((n) => n.started)
        .map((n) => (n.up ? `${n.id}: ${JSON.stringify(n.raw!.status())} applied=${n.kv!.applied}` : `${n.id}: down${n.retired ? ' (retired)' : ''}`))
        .join('\n    ');
      throw new Failure(`liveness: the cluster did not converge after healing (leader ${l?.id ?? 'none'})\n    ${view}`);
    }
    // Every member applied the same entries, so their states must be equal.
    const l = this.leader()!;
    const cs = l.raw!.confState();
    const digest = l.kv!.digest();
    for (const id of [...cs.voters, ...cs.learners]) {
      const kv = this.nodes.get(id)!.kv!;
      if (kv.digest() !== digest) throw new Failure(`state machines differ at ${kv.applied}: ${id} vs leader ${l.id}`);
    }
  }

  private checkLinearizable(): void {
    const ops = this.history.filter((o) => !this.abandoned.has(o.id));
    const r = checkHistory(ops);
    this.stats.explored = r.explored;
    if (!r.ok) {
      throw new Failure(`linearizability: history of key ${r.key} is ${r.reason}:\n${describeOps(r.ops)}`);
    }
  }

  // ---- tracing -------------------------------------------------------------------------------

  /** Folds an event into the trace hash. */
  private trace(kind: number, ...xs: (number | string)[]): void {
    let a = this.h1 ^ kind;
    let b = this.h2 ^ Math.imul(kind, 0x9e3779b1);
    a = Math.imul(a ^ this.now, 0x01000193);
    b = Math.imul(b ^ this.now, 0x85ebca6b);
    for (const x of xs) {
      const v = typeof x === 'number' ? x | 0 : strHash(x);
      a = Math.imul(a ^ v, 0x01000193);
      b = Math.imul(b ^ v, 0xc2b2ae35) ^ (b >>> 15);
    }
    this.h1 = a >>> 0;
    this.h2 = b >>> 0;
    // Keep the last few events for the failure report (formatted only then).
    this.recent[this.recentAt] = [this.now, this.stepCount, kind, xs, undefined];
    this.recentAt = (this.recentAt + 1) % RECENT;
  }

  /** Attaches the message to the event just traced, for a readable failure report. */
  private recentMsg(m: Message): void {
    const last = this.recent[(this.recentAt + RECENT - 1) % RECENT];
    if (last !== undefined) last[4] = m;
  }

  private log(line: () => string): void {
    if (this.opts.log !== undefined) this.opts.log(`t=${this.now} #${this.stepCount} ${line()}`);
  }
}

function strHash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h;
}

export function describeMsg(m: Message): string {
  let s = `${m.type} ${m.from}->${m.to} t${m.term}`;
  if (m.type === 'MsgApp') s += ` prev=(${m.index},t${m.logTerm}) n=${m.entries.length} commit=${m.commit}`;
  else if (m.type === 'MsgAppResp') s += m.reject ? ` reject ${m.index} hint=(${m.rejectHint},t${m.logTerm})` : ` ok ${m.index}`;
  else if (m.type === 'MsgVote' || m.type === 'MsgPreVote') s += ` last=(${m.index},t${m.logTerm})${m.context ? ' ' + m.context : ''}`;
  else if (m.type === 'MsgVoteResp' || m.type === 'MsgPreVoteResp') s += m.reject ? ' reject' : ' grant';
  else if (m.type === 'MsgHeartbeat') s += ` commit=${m.commit}${m.context ? ' ctx' : ''}`;
  else if (m.type === 'MsgSnap') s += ` snap=(${m.snapshot?.meta.index},t${m.snapshot?.meta.term})`;
  else if (m.type === 'MsgReadIndexResp') s += ` index=${m.index}`;
  return s;
}

/** Runs one seed. */
export function runSeed(seed: number, opts: Omit<SimOptions, 'seed'> = {}): SimResult {
  return new Simulation({ ...opts, seed }).run();
}

/** The command that replays a seed with a full event log. */
export function replayCommand(seed: number, bug?: string): string {
  return `SEED=${seed}${bug ? ` BUG=${bug}` : ''} npx vitest run test/raft-sim/replay.test.ts   # or: node dist/bench/soak.js --seed ${seed}${bug ? ` --bug ${bug}` : ''} --verbose`;
}
