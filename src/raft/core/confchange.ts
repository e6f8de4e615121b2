import { Progress } from './progress.js';
import { isJoint, type TrackerConfig } from './tracker.js';
import type { ConfChange, ConfChangeSingle, ConfState } from './types.js';

// Membership changes: joint consensus (Raft thesis 4.3) in the shape of etcd's ConfChangeV2, with
// one-voter changes made directly.
//
// Why joint consensus rather than one server at a time:
// - Peers are declarative manifests; one apply may add and remove several voters (replace a
//   machine, move the control plane). Joint consensus does any such change in one safe step;
//   single-server changes would force the caller to serialise and to find a safe order.
// - Removing the leader is ordinary: it keeps leading through the joint phase (counting itself
//   only in the outgoing half) and steps down once the final configuration is applied.
// - A configuration takes effect when its entry is APPLIED, as in etcd, not when appended (thesis
//   4.1). Only committed entries change the configuration, so a truncated log suffix never has to
//   roll a configuration back, and a snapshot's configuration is simply the one as of its index.
//
// Why that is safe: consecutive configurations (old, joint, new; or old and old +- one voter) have
// intersecting quorums, and at most two consecutive ones are in use at any time:
// - a leader proposes a change only when no other is pending (pendingConfIndex <= applied) and
//   only after it committed an entry of its own term. The second rule is the fix for the known
//   single-server bug (Ongaro, raft-dev 2015): without it a new leader could append a change on
//   top of an uncommitted change of an earlier term from a different, non-adjacent configuration;
// - a node does not campaign while a committed conf change is unapplied, so a candidate counts
//   votes in the newest configuration it knows to be committed;
// - the change that leaves a joint configuration is only proposed after the one that entered it
//   is applied, so every MsgApp that carries it also carries a commit index covering the entering
//   one: no node holds the leaving entry without knowing that the entering one is committed.
//
// Applying a change that is invalid for the current configuration leaves it unchanged (every node
// does the same, deterministically); proposeConfChange validates first, so that does not happen.

export type { ConfChange, ConfChangeSingle };

/** The configuration and progress map after a change; the inputs are not modified. */
export interface ChangeResult {
  config: TrackerConfig;
  progress: Map<string, Progress>;
}

export class ConfChangeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfChangeError';
  }
}

/** A ConfChange with no changes leaves a joint configuration. */
export function leavesJoint(cc: ConfChange): boolean {
  return cc.changes.length === 0;
}

/** Whether cc enters a joint configuration, and whether that is left automatically. */
export function entersJoint(cc: ConfChange): { joint: boolean; autoLeave: boolean } {
  const t = cc.transition ?? 'auto';
  const joint = cc.changes.length > 0 && (t !== 'auto' || cc.changes.length > 1);
  return { joint, autoLeave: joint && t !== 'explicit' };
}

/** Computes configuration changes against a base configuration, after etcd's confchange.Changer. */
export class Changer {
  constructor(
    private readonly base: TrackerConfig,
    private readonly baseProgress: ReadonlyMap<string, Progress>,
    /** New members are probed from here. */
    private readonly lastIndex: number,
    private readonly maxInflight: number,
  ) {}

  /** Applies cc: enters or leaves a joint configuration, or makes a simple change. */
  apply(cc: ConfChange): ChangeResult {
    if (leavesJoint(cc)) return this.leaveJoint();
    const { joint, autoLeave } = entersJoint(cc);
    return joint ? this.enterJoint(autoLeave, cc.changes) : this.simple(cc.changes);
  }

  /** Old voters stay as the outgoing half; the changes apply to the incoming half. */
  enterJoint(autoLeave: boolean, changes: readonly ConfChangeSingle[]): ChangeResult {
    if (isJoint(this.base)) throw new ConfChangeError('configuration is already joint');
    if (this.base.voters[0].size === 0) throw new ConfChangeError('cannot make a zero-voter configuration joint');
    const w = this.working();
    w.outgoing = new Set(w.incoming);
    this.applyChanges(w, changes);
    w.autoLeave = autoLeave;
    return this.finish(w);
  }

  /** Drops the outgoing half; learnersNext become learners, removed voters lose their progress. */
  leaveJoint(): ChangeResult {
    if (!isJoint(this.base)) throw new ConfChangeError('configuration is not joint');
    const w = this.working();
    for (const id of w.learnersNext) {
      w.learners.add(id);
      this.editProgress(w, id).isLearner = true;
    }
    w.learnersNext.clear();
    for (const id of w.outgoing) {
      if (!w.incoming.has(id) && !w.learners.has(id)) w.progress.delete(id);
    }
    w.outgoing.clear();
    w.autoLeave = false;
    return this.finish(w);
  }

  /** Changes that alter the voters by at most one, made directly (old and new majorities overlap). */
  simple(changes: readonly ConfChangeSingle[]): ChangeResult {
    if (isJoint(this.base)) throw new ConfChangeError('cannot make a simple change while joint');
    const w = this.working();
    this.applyChanges(w, changes);
    let diff = 0;
    for (const id of w.incoming) if (!this.base.voters[0].has(id)) diff++;
    for (const id of this.base.voters[0]) if (!w.incoming.has(id)) diff++;
    if (diff > 1) throw new ConfChangeError('more than one voter changed without entering a joint configuration');
    return this.finish(w);
  }

  private working(): Working {
    return {
      incoming: new Set(this.base.voters[0]),
      outgoing: new Set(this.base.voters[1]),
      learners: new Set(this.base.learners),
      learnersNext: new Set(this.base.learnersNext),
      autoLeave: this.base.autoLeave,
      progress: new Map(this.baseProgress),
      cloned: new Set(),
    };
  }

  private applyChanges(w: Working, changes: readonly ConfChangeSingle[]): void {
    for (const c of changes) {
      if (typeof c.node !== 'string' || c.node === '') throw new ConfChangeError('a change needs a node id');
      switch (c.type) {
        case 'addNode':
          this.makeVoter(w, c.node);
          break;
        case 'addLearner':
          this.makeLearner(w, c.node);
          break;
        case 'removeNode':
          this.remove(w, c.node);
          break;
        default:
          throw new ConfChangeError(`unknown change type ${String((c as { type: unknown }).type)}`);
      }
    }
    if (w.incoming.size === 0) throw new ConfChangeError('removed all voters');
  }

  private makeVoter(w: Working, id: string): void {
    if (!w.progress.has(id)) {
      this.addProgress(w, id, false);
    } else {
      this.editProgress(w, id).isLearner = false;
    }
    w.learners.delete(id);
    w.learnersNext.delete(id);
    w.incoming.add(id);
  }

  private makeLearner(w: Working, id: string): void {
    if (w.learners.has(id)) return;
    // Demoting an outgoing voter: it keeps voting in the outgoing half until the joint
    // configuration is left, then becomes a learner (learnersNext).
    const pr = w.progress.get(id);
    this.remove(w, id);
    if (pr === undefined) this.addProgress(w, id, true);
    else w.progress.set(id, pr); // keep what we know of its log
    if (w.outgoing.has(id)) {
      w.learnersNext.add(id);
    } else {
      this.editProgress(w, id).isLearner = true;
      w.learners.add(id);
    }
  }

  private remove(w: Working, id: string): void {
    if (!w.progress.has(id)) return;
    w.incoming.delete(id);
    w.learners.delete(id);
    w.learnersNext.delete(id);
    // An outgoing voter still votes until the joint configuration is left.
    if (!w.outgoing.has(id)) w.progress.delete(id);
  }

  private addProgress(w: Working, id: string, isLearner: boolean): void {
    const pr = new Progress(Math.max(this.lastIndex, 1), this.maxInflight, isLearner);
    // A new member counts as recently active, so check-quorum does not fire before it answers.
    pr.recentActive = true;
    w.progress.set(id, pr);
    w.cloned.add(id);
  }

  /** The Progress of id, copied before the first edit so the base stays untouched. */
  private editProgress(w: Working, id: string): Progress {
    const pr = w.progress.get(id)!;
    if (w.cloned.has(id)) return pr;
    const copy = pr.clone();
    w.progress.set(id, copy);
    w.cloned.add(id);
    return copy;
  }

  private finish(w: Working): ChangeResult {
    const config: TrackerConfig = {
      voters: [w.incoming, w.outgoing],
      learners: w.learners,
      learnersNext: w.learnersNext,
      autoLeave: w.autoLeave,
    };
    checkInvariants(config, w.progress);
    return { config, progress: w.progress };
  }
}

interface Working {
  incoming: Set<string>;
  outgoing: Set<string>;
  learners: Set<string>;
  learnersNext: Set<string>;
  autoLeave: boolean;
  progress: Map<string, Progress>;
  cloned: Set<string>;
}

function checkInvariants(c: TrackerConfig, progress: ReadonlyMap<string, Progress>): void {
  for (const id of [...c.voters[0], ...c.voters[1], ...c.learners, ...c.learnersNext]) {
    if (!progress.has(id)) throw new ConfChangeError(`no progress for ${id}`);
  }
  for (const id of c.learnersNext) {
    if (!c.voters[1].has(id)) throw new ConfChangeError(`${id} is in learnersNext but not an outgoing voter`);
    if (progress.get(id)!.isLearner) throw new ConfChangeError(`${id} is in learnersNext but already a learner`);
  }
  for (const id of c.learners) {
    if (c.voters[0].has(id) || c.voters[1].has(id)) throw new ConfChangeError(`${id} is both a learner and a voter`);
    if (!progress.get(id)!.isLearner) throw new ConfChangeError(`${id} is a learner but its progress is not`);
  }
  if (!isJoint(c) && (c.learnersNext.size > 0 || c.autoLeave)) {
    throw new ConfChangeError('learnersNext and autoLeave need a joint configuration');
  }
}

/** The configuration a snapshot (or a node's storage) describes, with fresh progress for each member. */
export function restoreConf(cs: ConfState, lastIndex: number, maxInflight: number): ChangeResult {
  const outgoing = new Set(cs.votersOutgoing ?? []);
  const config: TrackerConfig = {
    voters: [new Set(cs.voters), outgoing],
    learners: new Set(cs.learners),
    learnersNext: new Set(outgoing.size > 0 ? (cs.learnersNext ?? []) : []),
    autoLeave: outgoing.size > 0 && cs.autoLeave === true,
  };
  const progress = new Map<string, Progress>();
  const next = Math.max(lastIndex, 1);
  for (const id of [...config.voters[0], ...config.voters[1], ...config.learnersNext]) {
    if (!progress.has(id)) progress.set(id, new Progress(next, maxInflight, false));
  }
  for (const id of config.learners) progress.set(id, new Progress(next, maxInflight, true));
  checkInvariants(config, progress);
  return { config, progress };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeConfChange(cc: ConfChange): Uint8Array {
  const plain: ConfChange = { changes: cc.changes.map((c) => ({ type: c.type, node: c.node })) };
  if (cc.transition !== undefined) plain.transition = cc.transition;
  return encoder.encode(JSON.stringify(plain));
}

/** Decodes a conf entry's data; undefined if it is not a ConfChange (a corrupt or foreign entry). */
export function decodeConfChange(data: Uint8Array): ConfChange | undefined {
  let v: unknown;
  try {
    v = JSON.parse(decoder.decode(data));
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as { transition?: unknown; changes?: unknown };
  if (!Array.isArray(o.changes)) return undefined;
  const changes: ConfChangeSingle[] = [];
  for (const c of o.changes as unknown[]) {
    const x = c as { type?: unknown; node?: unknown };
    if (typeof c !== 'object' || c === null || typeof x.node !== 'string') return undefined;
    if (x.type !== 'addNode' && x.type !== 'addLearner' && x.type !== 'removeNode') return undefined;
    changes.push({ type: x.type, node: x.node });
  }
  const cc: ConfChange = { changes };
  if (o.transition === 'auto' || o.transition === 'implicit' || o.transition === 'explicit') cc.transition = o.transition;
  else if (o.transition !== undefined) return undefined;
  return cc;
}
