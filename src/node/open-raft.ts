import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import type { Signal } from '../lifecycle/index.js';
import { RaftNode, type Transport } from '../raft/index.js';
import type { ServiceBugs } from '../service/index.js';
import type { DesiredStateStore } from '../state/index.js';

// A voter's Raft node over the node's store, with its metrics; what it reports goes out through
// signals that the node connects once the parts that follow them exist.

export interface RaftSignals {
  applied: Signal;
  /** This node became the leader (true), or stopped being it. */
  leadership: Signal<[boolean]>;
  confChanged: Signal;
}

export async function openRaft(o: { dir: string; self: string; transport: Transport; store: DesiredStateStore; bootstrap: boolean; registry: Registry; log: Logger; signals: RaftSignals; bugs?: ServiceBugs }): Promise<RaftNode> {
  const raft = await RaftNode.open({
    dir: o.dir,
    ...(o.bugs?.walKeepTornTail ? { keepTornWalTail: true } : {}),
    ...(o.bugs?.walDiesWhenFull ? { walDiesWhenFull: true } : {}),
    id: o.self,
    transport: o.transport,
    sm: o.store,
    ...(o.bootstrap ? { bootstrap: { voters: [o.self], learners: [] } } : {}),
    onWarning: (m) => o.log.warn(m),
    onRoleChange: (role, leader, term) => {
      o.log.info({ role, leader, term }, 'raft role');
      o.signals.leadership.emit(role === 'leader');
    },
    onConfChange: () => o.signals.confChanged.emit(),
    onApplied: () => o.signals.applied.emit(),
  });
  registerRaftMetrics(o.registry, raft);
  return raft;
}

function registerRaftMetrics(registry: Registry, raft: RaftNode): void {
  const registers = [registry];
  new Gauge({ name: 'blixard_raft_term', help: 'Current Raft term', registers, collect() { this.set(raft.term); } });
  new Gauge({ name: 'blixard_raft_commit_index', help: 'Highest log index known committed', registers, collect() { this.set(raft.commitIndex); } });
  new Gauge({ name: 'blixard_raft_applied_index', help: 'Highest log index applied to the store', registers, collect() { this.set(raft.appliedIndex); } });
  new Gauge({ name: 'blixard_raft_is_leader', help: '1 on the leader', registers, collect() { this.set(raft.isLeader ? 1 : 0); } });
  new Gauge({ name: 'blixard_raft_wal_fsyncs', help: 'WAL fsyncs since start', registers, collect() { this.set(raft.walStats.fsyncs); } });
  new Gauge({ name: 'blixard_raft_wal_records', help: 'WAL records (one per Ready) since start', registers, collect() { this.set(raft.walStats.records); } });
  new Gauge({ name: 'blixard_raft_wal_disk_full', help: '1 while the data dir has no room for the Raft log (this node acknowledges nothing meanwhile)', registers, collect() { this.set(raft.diskFullSince === undefined ? 0 : 1); } });
  new Gauge({ name: 'blixard_raft_entries_persisted', help: 'Log entries made durable since start', registers, collect() { this.set(raft.walStats.entries); } });
}
