import type { ConfChange, ConfState } from '../raft/index.js';
import type { DesiredStateStore, PeerSpec } from '../state/index.js';

// The leader keeps the Raft configuration in step with the admitted voters: Peers with role voter
// and nodes that joined as voters. One change at a time, as the core demands: a new voter comes
// in as a learner, is promoted once it has caught up, and a voter that is no longer wanted goes.
// Pure: given what the leader sees, the next change to propose, if any.

export interface ProgressView {
  /** How far a member's log matches the leader's, and whether it was heard from recently. */
  progress(nodeId: string): { match: number; recentActive: boolean } | undefined;
  commit: number;
}

/** A learner this close to the leader's commit index is caught up enough to vote. */
const CAUGHT_UP = 32;

export function desiredVoters(store: DesiredStateStore): Set<string> {
  const want = new Set<string>();
  for (const n of store.listNodes()) if (n.role === 'voter') want.add(n.nodeId);
  for (const p of store.list('Peer')) {
    const s = p.spec as PeerSpec;
    if ((s.role ?? 'worker') === 'voter') want.add(s.nodeId);
  }
  return want;
}

export function nextConfChange(conf: ConfState, want: Set<string>, self: string, view: ProgressView): ConfChange | null {
  if (conf.votersOutgoing && conf.votersOutgoing.length > 0) return null; // leaving a joint config: the core does it
  const voters = new Set(conf.voters);
  const learners = new Set(conf.learners);
  for (const id of [...want].sort()) {
    if (voters.has(id)) continue;
    if (!learners.has(id)) return { changes: [{ type: 'addLearner', node: id }] };
    const p = view.progress(id);
    // Caught up: it holds something (at least the snapshot) and is close to the commit index.
    if (p && p.recentActive && p.match > 0 && p.match + CAUGHT_UP >= view.commit) return { changes: [{ type: 'addNode', node: id }] };
  }
  for (const id of [...voters].sort()) {
    // The leader never removes itself here: a leader that is not wanted hands leadership over
    // first (leadershipTarget), and the next leader removes it.
    if (!want.has(id) && id !== self) return { changes: [{ type: 'removeNode', node: id }] };
  }
  for (const id of [...learners].sort()) if (!want.has(id)) return { changes: [{ type: 'removeNode', node: id }] };
  return null;
}

/** A leader that is no longer wanted as a voter hands over to a wanted voter that is caught up. */
export function leadershipTarget(conf: ConfState, want: Set<string>, self: string, view: ProgressView): string | null {
  if (want.has(self)) return null;
  for (const id of [...conf.voters].sort()) {
    if (id === self || !want.has(id)) continue;
    const p = view.progress(id);
    if (p && p.recentActive && p.match >= view.commit) return id;
  }
  return null;
}

/** What the leader does next about the Raft configuration, if anything. */
export type MembershipStep = { kind: 'transfer'; to: string } | { kind: 'change'; cc: ConfChange } | null;

/** The leader's membership duty: hand leadership over when it is no longer wanted, else the next change. */
export function membershipStep(conf: ConfState, want: Set<string>, self: string, view: ProgressView): MembershipStep {
  const heir = leadershipTarget(conf, want, self, view);
  if (heir) return { kind: 'transfer', to: heir };
  const cc = nextConfChange(conf, want, self, view);
  return cc ? { kind: 'change', cc } : null;
}
