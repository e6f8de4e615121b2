import {
  MemoryStorage,
  RawNode,
  type Bugs,
  type ConfChange,
  type Config,
  type Message,
  type ReadState,
} from '../../src/raft/core/index.js';
import { Rng } from './prng.js';

// A small synchronous cluster for scenario tests, in the spirit of etcd's raft test `network`:
// messages are delivered in order, all at once, unless a link is cut or a filter drops them; the
// test drives ticks and faults by hand. Each node's state machine is the list of applied entry
// payloads (as strings), which is also what its snapshots hold.

export interface HarnessOptions {
  preVote?: boolean;
  checkQuorum?: boolean;
  electionTick?: number;
  heartbeatTick?: number;
  maxSizePerMsg?: number;
  maxInflight?: number;
  bugs?: Bugs;
  seed?: number;
}

export interface HarnessNode {
  readonly id: string;
  readonly storage: MemoryStorage;
  raw: RawNode | undefined;
  up: boolean;
  /** Payloads of applied normal entries (empty entries skipped), in order. */
  applied: string[];
  appliedIndex: number;
  readStates: ReadState[];
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export class Harness {
  readonly nodes = new Map<string, HarnessNode>();
  /** Every message delivered, in order (for assertions on what was sent). */
  readonly delivered: Message[] = [];
  /** Return false to drop a message. */
  filter: ((m: Message) => boolean) | undefined;
  private queue: Message[] = [];
  private readonly cut = new Set<string>();
  private readonly rng: Rng;

  constructor(
    ids: string[],
    private readonly opts: HarnessOptions = {},
    voters: string[] = ids,
    learners: string[] = [],
  ) {
    this.rng = new Rng(opts.seed ?? 1);
    for (const id of ids) {
      const storage = new MemoryStorage();
      if (voters.includes(id) || learners.includes(id)) storage.bootstrap({ voters, learners }, enc.encode('[]'));
      this.nodes.set(id, { id, storage, raw: undefined, up: false, applied: [], appliedIndex: 0, readStates: [] });
      this.start(id);
    }
  }

  config(id: string): Config {
    const o = this.opts;
    const rng = this.rng.fork();
    const cfg: Config = {
      id,
      electionTick: o.electionTick ?? 10,
      heartbeatTick: o.heartbeatTick ?? 1,
      preVote: o.preVote ?? false,
      checkQuorum: o.checkQuorum ?? false,
      maxInflight: o.maxInflight ?? 256,
      maxSizePerMsg: o.maxSizePerMsg ?? Infinity,
      rand: () => rng.float(),
    };
    if (o.bugs) cfg.bugs = o.bugs;
    return cfg;
  }

  node(id: string): HarnessNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  raw(id: string): RawNode {
    const raw = this.node(id).raw;
    if (raw === undefined) throw new Error(`${id} is down`);
    return raw;
  }

  /** Adds a node with empty storage (to be added to the cluster by a conf change). */
  add(id: string): void {
    const storage = new MemoryStorage();
    this.nodes.set(id, { id, storage, raw: undefined, up: false, applied: [], appliedIndex: 0, readStates: [] });
    this.start(id);
  }

  /** (Re)starts a node from what it persisted; its state machine restarts from its snapshot. */
  start(id: string): void {
    const n = this.node(id);
    const snap = n.storage.snapshot();
    n.applied = snap.meta.index === 0 ? [] : (JSON.parse(dec.decode(snap.data)) as string[]);
    n.appliedIndex = snap.meta.index;
    n.readStates = [];
    n.raw = new RawNode(this.config(id), n.storage);
    n.up = true;
  }

  /** Loses everything not persisted. */
  crash(id: string): void {
    const n = this.node(id);
    n.raw = undefined;
    n.up = false;
  }

  tick(id: string, times = 1): void {
    for (let i = 0; i < times; i++) {
      this.raw(id).tick();
      this.stabilize();
    }
  }

  tickAll(times = 1): void {
    for (let i = 0; i < times; i++) {
      for (const n of this.nodes.values()) if (n.up) n.raw!.tick();
      this.stabilize();
    }
  }

  /** Ticks everyone until `id` is leader (it campaigns first). */
  elect(id: string): void {
    this.raw(id).campaign();
    this.stabilize();
    if (this.raw(id).role !== 'leader') throw new Error(`${id} did not win: ${JSON.stringify(this.raw(id).status())}`);
  }

  propose(id: string, data: string): void {
    this.raw(id).propose(enc.encode(data));
    this.stabilize();
  }

  proposeConfChange(id: string, cc: ConfChange): void {
    this.raw(id).proposeConfChange(cc);
    this.stabilize();
  }

  /** Cuts the link from a to b (one way). */
  cutLink(a: string, b: string): void {
    this.cut.add(`${a}>${b}`);
  }

  isolate(id: string): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue;
      this.cutLink(id, other);
      this.cutLink(other, id);
    }
  }

  heal(): void {
    this.cut.clear();
  }

  /** Snapshots a node's state machine at its applied index and compacts its log up to there. */
  compact(id: string, keep = 0): void {
    const n = this.node(id);
    const s = n.storage;
    s.createSnapshot(n.appliedIndex, this.raw(id).confState(), enc.encode(JSON.stringify(n.applied)));
    s.compact(n.appliedIndex - keep);
  }

  leader(): string | undefined {
    let best: HarnessNode | undefined;
    for (const n of this.nodes.values()) {
      if (n.up && n.raw!.role === 'leader' && (best === undefined || n.raw!.term > best.raw!.term)) best = n;
    }
    return best?.id;
  }

  /** Runs every node's Ready cycle and delivers messages until nothing is left to do. */
  stabilize(maxRounds = 10_000): void {
    for (let round = 0; round < maxRounds; round++) {
      let busy = false;
      for (const n of this.nodes.values()) {
        if (n.up && n.raw!.hasReady()) {
          busy = true;
          this.handleReady(n);
        }
      }
      const msgs = this.queue;
      this.queue = [];
      for (const m of msgs) {
        busy = true;
        const to = this.nodes.get(m.to);
        if (to === undefined || !to.up || this.cut.has(`${m.from}>${m.to}`)) continue;
        if (this.filter && !this.filter(m)) continue;
        this.delivered.push(m);
        to.raw!.step(m);
      }
      if (!busy) return;
    }
    throw new Error('harness: the cluster did not settle');
  }

  private handleReady(n: HarnessNode): void {
    const raw = n.raw!;
    const rd = raw.ready();
    if (rd.snapshot) n.storage.applySnapshot(rd.snapshot);
    n.storage.append(rd.entries);
    if (rd.hardState) n.storage.setHardState(rd.hardState);
    for (const m of rd.messages) this.queue.push(m);
    if (rd.snapshot) {
      n.applied = JSON.parse(dec.decode(rd.snapshot.data)) as string[];
      n.appliedIndex = rd.snapshot.meta.index;
    }
    for (const e of rd.committedEntries) {
      if (e.index !== n.appliedIndex + 1) throw new Error(`${n.id} applied ${e.index} after ${n.appliedIndex}`);
      n.appliedIndex = e.index;
      if (e.type === 'normal' && e.data.byteLength > 0) n.applied.push(dec.decode(e.data));
    }
    for (const rs of rd.readStates) n.readStates.push(rs);
    raw.advance(rd);
  }
}
