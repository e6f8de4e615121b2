import type { Logger } from 'pino';
import { desiredVoters, membershipStep } from '../cluster/index.js';
import { every, type Runnable } from '../lifecycle/index.js';
import type { ClusterLog } from '../raft/index.js';
import type { DesiredStateStore, PeerSpec } from '../state/index.js';
import type { ClusterPublisher, Documents } from '../sync/index.js';
import type { MembershipRecord } from './membership.js';
import type { Registration } from './node-record.js';

// What a node re-checks twice a second: every node opens its documents once it knows them, learns
// that a Peer manifest admitted it, and keeps its own record current; the leader also publishes
// the cluster document and keeps the Raft configuration in step with the admitted voters.

export const DUTIES_EVERY_MS = 500;

export interface NodeDutiesOptions {
  /** What this process runs as (fixed for its life: a node admitted later as a worker by a Peer
   * manifest runs Raft until it restarts). */
  worker: boolean;
  store: DesiredStateStore;
  log: ClusterLog;
  docs: Documents;
  membership: MembershipRecord;
  registration: Registration;
  self: string;
  refreshPeers: () => void;
  onError: (err: unknown) => void;
  logger: Pick<Logger, 'info'>;
}

export class NodeDuties {
  constructor(private readonly o: NodeDutiesOptions) {}

  runnable(): Runnable {
    // The first pass is waited for: a node reports ready with its documents open and its record sent.
    return every('node-duties', DUTIES_EVERY_MS, () => this.tick(), { onError: this.o.onError, atStart: 'await' });
  }

  async tick(): Promise<void> {
    const { store, docs, membership, log } = this.o;
    this.o.refreshPeers();
    const { worker } = this.o;
    // A worker's documents are its whole view of the cluster: a failed open is tried again here.
    if (!docs.current && worker && membership.current?.docs) await docs.open(membership.current.docs, false);
    if (store.clusterId === null) return;
    if (!membership.current) {
      // Admitted through a Peer manifest: the replicated log now says which cluster and role.
      const mine = store.list('Peer').find((p) => (p.spec as PeerSpec).nodeId === this.o.self);
      await membership.set({ clusterId: store.clusterId, role: (mine?.spec as PeerSpec | undefined)?.role ?? 'voter', docs: null, trusted: [], since: new Date().toISOString() });
      this.o.logger.info({ clusterId: store.clusterId }, 'admitted to the cluster');
    }
    if (log.leader) await this.o.registration.ensure();
    if (!docs.current && !worker && store.docs) await docs.open(store.docs, true);
  }
}

export interface LeaderDutiesOptions {
  self: string;
  store: DesiredStateStore;
  log: ClusterLog;
  publisher: ClusterPublisher;
  onError: (err: unknown) => void;
  logger: Pick<Logger, 'info' | 'debug'>;
}

export class LeaderDuties {
  constructor(private readonly o: LeaderDutiesOptions) {}

  /** Leader-only: at once when this node becomes the leader, then twice a second. */
  runnable(): Runnable {
    return every('leader-duties', DUTIES_EVERY_MS, () => this.tick(), { onError: this.o.onError, atStart: true });
  }

  async tick(): Promise<void> {
    const { store, log, self, logger } = this.o;
    if (!log.isLeader || store.clusterId === null) return;
    await this.o.publisher.publish();
    const st = log.status();
    const step = membershipStep(log.membership, desiredVoters(store), self, { progress: (id) => st.progress?.[id], commit: st.commit });
    if (step?.kind === 'transfer') {
      logger.info({ to: step.to }, 'this node is no longer a voter: handing leadership over');
      log.transferLeadership(step.to);
    } else if (step?.kind === 'change') {
      logger.info({ change: step.cc.changes }, 'membership change');
      await log.proposeConfChange(step.cc).catch((e: unknown) => logger.debug({ err: (e as Error).message }, 'membership change not taken now'));
    }
  }
}
