// Quorum arithmetic, after etcd's quorum/ package: a majority configuration is a set of voters; a
// joint configuration is two of them (incoming, outgoing), and a decision needs a majority of
// EACH. An empty outgoing half is "no constraint", which makes a joint configuration with an empty
// outgoing half behave exactly like its incoming majority.

export type VoteResult = 'pending' | 'lost' | 'won';

export type MajorityConfig = ReadonlySet<string>;
export type JointConfig = readonly [incoming: MajorityConfig, outgoing: MajorityConfig];

/**
 * The highest index acknowledged by a majority: the floor(n/2)+1-th largest acknowledged index.
 * An empty configuration returns Infinity so that it never holds back a joint configuration.
 */
export function majorityCommitted(voters: MajorityConfig, acked: (id: string) => number | undefined): number {
  const n = voters.size;
  if (n === 0) return Infinity;
  const idx: number[] = [];
  for (const id of voters) idx.push(acked(id) ?? 0);
  idx.sort((a, b) => b - a);
  return idx[n >> 1]!;
}

/** The outcome of an election (or any yes/no poll) among `voters`, given the answers so far. */
export function majorityVote(voters: MajorityConfig, votes: ReadonlyMap<string, boolean>): VoteResult {
  if (voters.size === 0) return 'won';
  let yes = 0;
  let missing = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === undefined) missing++;
    else if (v) yes++;
  }
  const q = (voters.size >> 1) + 1;
  if (yes >= q) return 'won';
  if (yes + missing >= q) return 'pending';
  return 'lost';
}

export function jointCommitted(c: JointConfig, acked: (id: string) => number | undefined): number {
  return Math.min(majorityCommitted(c[0], acked), majorityCommitted(c[1], acked));
}

export function jointVote(c: JointConfig, votes: ReadonlyMap<string, boolean>): VoteResult {
  const a = majorityVote(c[0], votes);
  const b = majorityVote(c[1], votes);
  if (a === b) return a;
  if (a === 'lost' || b === 'lost') return 'lost';
  return 'pending'; // one won, the other is pending
}
