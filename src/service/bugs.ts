/**
 * Mistakes the fault tests must be able to catch (test/faults): set only through the
 * BLIXARD_TEST_BUGS environment variable, which nothing but those tests sets.
 */
export interface ServiceBugs {
  /** Answer reads from this node's replica, without asking the leader (stale reads). */
  localReads?: boolean;
  /** A node that believes it leads answers reads without confirming that with a quorum. */
  leaderReadsWithoutQuorum?: boolean;
  /** The Raft WAL leaves a torn tail in place on open and appends after it. */
  walKeepTornTail?: boolean;
  /** The Raft WAL dies on a full disk, as on any failed write (no recovery when space returns). */
  walDiesWhenFull?: boolean;
}

/** BLIXARD_TEST_BUGS=localReads,...: unknown names are an error, so a typo cannot pass silently. */
export function serviceBugs(env: NodeJS.ProcessEnv): ServiceBugs {
  const names = (env.BLIXARD_TEST_BUGS ?? '').split(',').filter(Boolean);
  const known: (keyof ServiceBugs)[] = ['localReads', 'leaderReadsWithoutQuorum', 'walKeepTornTail', 'walDiesWhenFull'];
  const unknown = names.filter((n) => !known.includes(n as keyof ServiceBugs));
  if (unknown.length > 0) throw new Error(`BLIXARD_TEST_BUGS: unknown ${unknown.join(', ')} (known: ${known.join(', ')})`);
  return Object.fromEntries(names.map((n) => [n, true])) as ServiceBugs;
}
