import { randomUUID } from 'node:crypto';
import type { Iroh } from '@number0/iroh';
import type { ClusterLog } from '../raft/index.js';
import type { Command, CommandOutcome, DesiredStateStore } from '../state/index.js';
import { NodeDocs } from '../sync/index.js';
import type { MembershipRecord } from './membership.js';
import type { NodeRecordSource } from './node-record.js';
import { StartupError } from './startup-error.js';

// The last step before a node serves: a new cluster's first entry, once this node leads its
// one-voter configuration; or, on a restart, a moment to find the leader, so that the first
// answers are useful (without a quorum the node still serves: status says there is no leader).

export interface TakePartOptions {
  bootstrap: boolean;
  self: string;
  iroh: Iroh;
  log: ClusterLog;
  store: DesiredStateStore;
  membership: MembershipRecord;
  record: NodeRecordSource;
  apiUrl: string;
  propose: (cmd: Command) => Promise<CommandOutcome>;
  logger: { info(o: object, msg?: string): void; warn(msg: string): void };
}

export async function takePart(o: TakePartOptions): Promise<void> {
  const { log, membership } = o;
  if (!membership.current && o.bootstrap) {
    await waitFor(() => log.isLeader, 10_000, 'leadership of the new cluster');
    const now = new Date().toISOString();
    const tickets = await NodeDocs.create(o.iroh);
    await o.propose({ op: 'bootstrap', time: now, clusterId: randomUUID(), node: await o.record.build(o.apiUrl, now), docs: tickets });
    await membership.set({ clusterId: o.store.clusterId!, role: 'voter', docs: null, trusted: [], since: now });
    o.logger.info({ clusterId: o.store.clusterId }, 'bootstrapped a new cluster');
  } else if (!membership.current) {
    o.logger.warn(`waiting to be admitted: apply a Peer with nodeId ${o.self} on the cluster, or restart with --join TICKET`);
  } else {
    const c = log.membership;
    const alone = c.voters.length === 1 && c.voters[0] === o.self && (c.votersOutgoing ?? []).length === 0;
    await waitFor(() => log.leader !== null, alone ? 5_000 : 3_000, 'a leader').catch(() => o.logger.warn('no leader yet; serving anyway'));
  }
}

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new StartupError(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
