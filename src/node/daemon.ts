import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { ApiError, createApiServer, removeRecord, writeRecord } from '../api/index.js';
import { deadMansSwitchSeconds, Directory, Fence, Liveness, schedulingView } from '../cluster/index.js';
import { ImageMetrics, ImageStore, holdersOf } from '../images/index.js';
import { Coalescer, Signal, every } from '../lifecycle/index.js';
import { ALPN, P2PMetrics, P2PNetwork, serveRpc } from '../p2p/index.js';
import type { ClusterLog } from '../raft/index.js';
import type { ReportedVm } from '../reconciler/index.js';
import { BackgroundErrors, Changes, Events, NodeService, nodeRequest, serviceBugs } from '../service/index.js';
import { DesiredStateStore, parseDuration } from '../state/index.js';
import { AntiEntropy, ClusterPublisher, Documents, heartbeat, heartbeatEveryMs, heartbeatsIn, WorkerLog, WorkerMirror } from '../sync/index.js';
import { enabledDrivers, fenceFile } from '../vm/index.js';
import { ApiListener } from './api-listener.js';
import { takePart } from './bootstrap.js';
import { dataPaths, loadOrCreateIdentity, loadOrCreateToken, lockDataDir } from './datadir.js';
import { deadMansSwitch } from './dead-mans-switch.js';
import { LeaderDuties, NodeDuties } from './duties.js';
import { NodeFencing } from './fencing.js';
import { checkStart, joinCluster, ticketOf } from './join.js';
import { Manager } from './manager.js';
import { MembershipRecord, readMembership } from './membership.js';
import { NodeRecordSource, Registration } from './node-record.js';
import { openRaft } from './open-raft.js';
import { SchedulingLoop } from './scheduling.js';
import { keepBoundPort, resolveSettings, saveSettings, type NodeSettings, type SettingFlags } from './settings.js';
import { StartupError } from './startup-error.js';
import { buildVmStage } from './vm-stage.js';
import { dataDirWatchdog } from './watchdog.js';

// The composition root (DESIGN.md): builds a node's parts from its data dir and flags, in the
// order they depend on each other, and hands them to the manager, which starts them in that order
// and stops them in reverse. Behaviour lives in the parts; callbacks that reach a part built later
// go through a Signal, connected once that part exists.

/**
 * How often a node pings each voter: a quarter of Raft's election timeout (1 s), because
 * forwarding asks whether the leader, and a quorum, still answer. Other peers keep the 1 s
 * default: pinging all of 20 nodes 4 times a second cost each node a few % of a core.
 */
const VOTER_PING_MS = 250;

export interface StartOptions {
  dataDir: string;
  flags: SettingFlags;
  bootstrap?: boolean;
  join?: string;
  log: Logger;
  env?: NodeJS.ProcessEnv;
  /** Called when the node cannot go on (its data dir vanished); the caller stops it and exits. */
  onFatal?: (why: string) => void;
}

export interface RunningNode {
  nodeId: string;
  name: string;
  apiUrl: string;
  token: string;
  settings: NodeSettings;
  service: NodeService;
  store: DesiredStateStore;
  log: ClusterLog;
  metrics: Registry;
  /** Image formats this node's drivers run, and the drivers it could not enable (and why). */
  formats: string[];
  skippedDrivers: { name: string; why: string }[];
  stop(): Promise<void>;
}

export async function startNode(opts: StartOptions): Promise<RunningNode> {
  const paths = dataPaths(opts.dataDir);
  await mkdir(paths.root, { recursive: true, mode: 0o700 });
  const manager = new Manager({ log: opts.log });
  manager.adopt('data-dir lock', await lockDataDir(paths.root));
  try {
    return await assemble(opts, manager);
  } catch (e) {
    await manager.stop();
    throw e;
  }
}

async function assemble(opts: StartOptions, manager: Manager): Promise<RunningNode> {
  const { log } = opts;
  // Mistakes for the fault tests to catch; BLIXARD_TEST_BUGS is set by nothing else.
  const bugs = serviceBugs(opts.env ?? process.env);
  const paths = dataPaths(opts.dataDir);
  const { settings, problems } = await resolveSettings(paths.root, opts.flags);
  if (problems.length > 0) throw new StartupError(problems.join('\n'), 'invalid');
  const { nodeId: self, secretKey } = await loadOrCreateIdentity(paths.root);
  const token = await loadOrCreateToken(paths.root);
  await saveSettings(paths.root, settings);
  const membership = new MembershipRecord(paths.root, await readMembership(paths.root));
  const ticket = opts.join ? ticketOf(opts.join) : undefined;
  checkStart(membership.current, ticket, !!opts.bootstrap, settings.p2p === 'off', log);
  const nodeTimeoutMs = parseDuration(settings.nodeTimeout);
  const fenceAfterMs = parseDuration(settings.fenceAfter);

  // Errors of background tasks are never swallowed: logged with context, counted in metrics, and
  // shown by `blixard status` (the last ones).
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'blixard_process_' });
  const p2pMetrics = new P2PMetrics(registry);
  const errors = new BackgroundErrors();
  const events = new Events();
  const changes = new Changes();
  const bgError = (component: string, level: 'warn' | 'debug' = 'warn') => (err: unknown) => {
    log[level]({ component, err: (err as Error)?.message ?? String(err) }, `${component} failed`);
    p2pMetrics.errors.inc({ component });
    if (level === 'warn') errors.record(component, err);
  };

  // Who may talk to us, and over Iroh. Iroh takes a second or more to bind (it probes the network).
  const store = new DesiredStateStore();
  const directory = new Directory({ self, store, trusted: () => [...membership.trusted, ...(ticket ? [ticket.leader] : [])], awaitingPeer: !ticket && !opts.bootstrap });
  const p2pOff = settings.p2p === 'off';
  const net = await P2PNetwork.start({
    dir: paths.iroh,
    secretKey,
    listen: settings.listen,
    discovery: settings.discovery,
    admit: (id, alpn) => !p2pOff && (alpn === ALPN.api || directory.admitted(id)),
    metrics: p2pMetrics,
    debug: (o, msg) => log.debug(o, msg),
    // A peer that is down is news only while it lasts: logged at debug, counted (the peers
    // table of `status` shows the last error per peer).
    onPeerError: (_id, err) => bgError('peer-connection', 'debug')(err),
  });
  manager.adopt('p2p network', () => net.stop());
  const { iroh, rpc, peers, transport } = net;
  await keepBoundPort(paths.root, settings, await net.addresses());
  const addresses = () => net.addresses();
  const author = (await iroh.authors.default()).toString();

  // Images: pieces in Iroh's blob store (what peers fetch), files for hypervisors, an index.
  const images = await ImageStore.open({ dir: path.join(paths.root, 'images'), iroh, log });
  const imageMetrics = await ImageMetrics.create(registry);

  // The hypervisor drivers this machine can run; the formats they run are what the node offers.
  const enabled = await enabledDrivers(paths.root, settings.hypervisor);
  for (const sk of enabled.skipped) {
    if (settings.hypervisor !== 'auto') throw new StartupError(`--hypervisor ${settings.hypervisor}: the ${sk.name} driver cannot run here: ${sk.why}`, 'invalid');
    log.warn({ driver: sk.name, why: sk.why }, 'driver not available; VMs needing it will not be placed here');
  }
  const formats = [...new Set(enabled.drivers.flatMap((d) => d.formats))].sort();
  const record = new NodeRecordSource({ self, settings, role: () => membership.current?.role ?? settings.role, addresses, formats, author });
  if (!membership.current && ticket) {
    const now = new Date();
    await membership.set(await joinCluster({ ticket, rpc, self, record: await record.build(null, now.toISOString()), now, waiting: (why) => log.info({ why }, 'joining: the node in the ticket does not answer yet; trying again') }));
    log.info({ clusterId: membership.current!.clusterId, role: membership.current!.role }, 'joined the cluster');
  }
  const role = membership.current?.role;

  // The cluster's log: Raft for every voter, and for a new data dir waiting to be admitted (the
  // leader replicates to it); a worker follows the cluster document instead.
  const applied = new Signal();
  const leadership = new Signal<[boolean]>();
  const confChanged = new Signal();
  const docs = new Documents({ iroh, self, authorOf: (id) => store.node(id)?.author, peers: () => directory.reachable(), metrics: p2pMetrics, onError: (doc, err) => bgError(`document-${doc}`)(err), log });
  manager.adopt('documents', () => docs.close());
  const clusterLog: ClusterLog =
    role === 'worker'
      ? new WorkerLog({
          leader: () => docs.current?.clusterView.get<{ leader?: string | null }>('meta/cluster')?.leader ?? null,
          voters: () => store.listNodes().filter((n) => n.role === 'voter').map((n) => n.nodeId),
          rev: () => docs.current?.clusterView.rev ?? 0,
          loaded: () => docs.ready,
          lastVoterContact: () => Math.max(0, ...peers.list().flatMap((h) => (store.node(h.nodeId)?.role === 'voter' && h.lastSeen ? [Date.parse(h.lastSeen)] : []))),
          // Voters answer a worker's pings every second; the peer manager gives one up after 5 s.
          voterTimeoutMs: 5_000,
        })
      : await openRaft({ dir: path.join(paths.state, 'raft'), self, transport, store, bootstrap: !membership.current && !!opts.bootstrap, registry, log, signals: { applied, leadership, confChanged }, bugs });
  manager.adopt('cluster log', () => clusterLog.close());
  // The only voter need not wait out an election timeout: nobody else can win.
  const conf = clusterLog.membership;
  if (conf.voters.length === 1 && conf.voters[0] === self && (conf.votersOutgoing ?? []).length === 0) clusterLog.campaign();
  const refreshPeers = () => {
    transport.setPeers(directory.raftPeers(clusterLog.membership));
    const { voters } = clusterLog.membership;
    peers.setPeers(directory.watched(clusterLog.membership).map((p) => (voters.includes(p.nodeId) ? { ...p, pingEveryMs: VOTER_PING_MS } : p)));
  };

  // The document stage: a worker mirrors the cluster document into its store, the leader
  // publishes its store into it, every node heartbeats and repairs what gossip missed.
  const mirror = new WorkerMirror({ store, docs: () => docs.current, loaded: () => applied.emit() });
  manager.adopt('worker mirror', () => mirror.cancel());
  const publisher = new ClusterPublisher({ self, store, log: clusterLog, docs: () => docs.current, stopping: () => manager.stopping, onError: bgError('publish-cluster-document') });
  const antiEntropy = new AntiEntropy({ docs: () => docs.current, peers: () => directory.reachable(), onSyncError: bgError('document-sync', 'debug'), onRepairError: bgError('document-content'), onRepaired: (n) => log.info({ entries: n }, 'fetched document content Iroh had left missing') });
  // A session that came back (either side restarted, or a partition healed): the documents sync
  // with that peer now rather than wait for someone to write.
  net.onPeerChange((h) => h.connected && antiEntropy.syncWith([{ nodeId: h.nodeId, addresses: directory.addressesOf(h.nodeId) }]));

  // The cluster's rules, fed from this node's view.
  const liveness = new Liveness({ self, nodeTimeoutMs, fenceAfterMs, now: Date.now, heartbeats: () => heartbeatsIn(docs.current?.statusView) });
  const nodeReady = (id: string) => liveness.ready(id, peers.get(id)?.connected ?? false);
  const fencing = new NodeFencing({ fence: new Fence({ role: role === 'worker' ? 'worker' : 'voter', startedAt: Date.now(), nodeTimeoutMs, fenceAfterMs, now: Date.now }), role: role === 'worker' ? 'worker' : 'voter', log: clusterLog, store, docs, directory, nodeTimeoutMs, onError: bgError('document-sync'), logger: log });

  // The parts that run VMs here, and the images they need.
  const { images: nodeImages, reconciler, warmCache } = buildVmStage({
    self,
    dataDir: paths.root,
    settings,
    store,
    images,
    imageMetrics,
    docs,
    directory,
    drivers: enabled.drivers,
    gate: () => fencing.gate(),
    report: (name, r) => {
      changes.emit([name]);
      const d = docs.current;
      if (d) (r ? d.writer.set(`vm/${name}`, r) : d.writer.remove(`vm/${name}`)).catch(bgError('write-vm-status'));
    },
    event: (name, e) => {
      events.record('VirtualMachine', name, e.type, e.reason, e.message);
      if (e.reason === 'Failed') bgError(`reconcile VirtualMachine/${name}`)(new Error(e.message));
    },
    onError: bgError('publish-image-holdings'),
    log,
  });
  manager.adopt('images', () => nodeImages.stop());
  const { prefetcher, cache } = nodeImages;
  fencing.changed.connect(() => reconciler.kick());

  // What the API calls, served here or passed on to the leader.
  const api = new ApiListener(settings.api);
  const service = new NodeService({
    bugs,
    self,
    name: settings.name,
    store,
    log: clusterLog,
    p2pOff,
    fallbackLeader: () => (role === 'worker' ? (clusterLog.membership.voters[0] ?? membership.trusted[0]?.nodeId ?? null) : null),
    send: (to, call) => rpc.call({ nodeId: to, addresses: directory.addressesOf(to) }, nodeRequest(call)),
    heardAt: (id) => peers.heardAt(id),
    admitted: (id) => directory.admitted(id),
    blobs: { has: (h) => images.has(h), importStream: async (h, body) => { const r = await images.importStream(h, body); cache.kick(); return r; } },
    transfers: () => prefetcher.transfers(),
    addresses,
    apiUrl: () => api.url,
    vms: reconciler,
    nodeReady,
    remoteVm: (nodeId, vm) => docs.current?.statusView.get<ReportedVm>(nodeId, `vm/${vm}`),
    peerHealth: () => peers.list().map((h) => ({ nodeId: h.nodeId, name: h.name, connected: h.connected, rttMs: h.rttMs, lastSeen: h.lastSeen, lastError: h.lastError })),
    holders: (h) => (docs.current ? holdersOf(docs.current.statusView, h) : []),
    addLearner: async (id) => {
      refreshPeers();
      if (!clusterLog.membership.voters.includes(id) && !clusterLog.membership.learners.includes(id)) await clusterLog.proposeConfChange({ changes: [{ type: 'addLearner', node: id }] }).catch(bgError('add-learner', 'debug'));
    },
    events,
    errors,
    changes,
  });
  serveRpc(net.router, (req, remote) => service.serveNode(req, remote), { metrics: p2pMetrics });
  const scheduling = new SchedulingLoop(store, schedulingView(liveness, (id) => peers.get(id)?.connected ?? false, (id, vm) => docs.current?.statusView.get(id, `vm/${vm}`) === undefined), (cmd) => service.propose(cmd), () => service.isLeader, log);

  // Everything that follows a change of the desired state, coalesced: at thousands of writes per
  // second it runs a few dozen times per second, not once per write.
  const afterApply = new Coalescer(() => {
    if (manager.stopping) return;
    scheduling.kick();
    reconciler.desiredChanged();
    refreshPeers();
    if (clusterLog.isLeader) void publisher.publish();
    warmCache();
    cache.kick();
    changes.emit(null);
  }, 20);
  manager.adopt('after-apply', () => afterApply.cancel());
  applied.connect(() => manager.stopping || afterApply.kick());
  confChanged.connect(refreshPeers);
  const onLeadership = (leader: boolean) => {
    liveness.leading(leader);
    // Other leaders may have written the cluster document since this node last did.
    if (leader) publisher.leading();
    void manager.setLeader(leader);
  };
  leadership.connect(onLeadership);
  if (clusterLog.isLeader) onLeadership(true);
  docs.onClusterChange(() => role === 'worker' && mirror.kick());
  docs.onStatusChange((keys) => {
    prefetcher.holdingsChanged();
    // status/<node>/vm/<name>: that VM's status; anything else (a heartbeat): any VM's.
    const vms = keys.map((k) => /^status\/[^/]+\/vm\/(.+)$/.exec(k)?.[1]);
    changes.emit(vms.every((v) => v !== undefined) ? (vms as string[]) : null);
  });
  docs.onOpen((d) => {
    if (role === 'worker') mirror.kick();
    void nodeImages.attach(d.writer);
    warmCache();
    void publisher.publish();
  });
  refreshPeers();

  // The API opens only once everything is built: whoever gets an answer may rely on the node.
  await api.listen(createApiServer({ token, backend: service, serving: api.serving, metrics: () => registry.metrics(), debugDocument: (doc, prefix) => debugDocument(docs, doc, prefix), onError: (err, req) => log.error({ err, ...req }, 'API request failed') }));
  manager.adopt('api server', () => api.close());
  if (role === 'worker') void docs.open(membership.current!.docs!, false).catch(bgError('open-documents'));
  await takePart({ bootstrap: !!opts.bootstrap, self, iroh, log: clusterLog, store, membership, record, apiUrl: api.url, propose: (cmd) => service.propose(cmd), logger: log });

  const registration = new Registration({ source: record, stored: () => store.node(self), apiUrl: () => api.url, register: (rec) => service.register(rec) });
  const duties = new NodeDuties({ worker: role === 'worker', store, log: clusterLog, docs, membership, registration, self, refreshPeers, onError: bgError('membership'), logger: log });
  manager.add(deadMansSwitch({ file: fenceFile(paths.root), seconds: () => deadMansSwitchSeconds({ otherNodes: !p2pOff && store.listNodes().some((n) => n.nodeId !== self), fenceAfterMs }), onError: bgError('vm-fence-file') }));
  manager.add(every('liveness', 250, () => liveness.refresh()));
  manager.add(fencing.watch());
  if (!p2pOff) manager.add(antiEntropy.resync());
  if (!p2pOff) manager.add(antiEntropy.repair());
  manager.add(heartbeat({ docs: () => docs.current, everyMs: heartbeatEveryMs(nodeTimeoutMs), value: () => ({ name: settings.name, role: membership.current?.role ?? settings.role, formats, capacity: { vcpus: settings.vcpus, memoryMiB: settings.memoryMiB } }), onError: bgError('heartbeat') }));
  // Nothing acts on the desired state before this node has re-applied what it had committed.
  manager.add({ name: 'log recovery', start: () => clusterLog.recovered(), stop() {} });
  manager.add({ name: 'reconciler', start: () => reconciler.start(), stop: () => reconciler.stop() });
  manager.add({ name: 'image cache', start: () => cache.start(), stop: () => cache.stop() });
  manager.add(duties.runnable());
  manager.add(scheduling, { leaderOnly: true });
  manager.add(new LeaderDuties({ self, store, log: clusterLog, publisher, onError: bgError('membership'), logger: log }).runnable(), { leaderOnly: true });
  manager.add(dataDirWatchdog({ lockFile: paths.lock, pid: process.pid, lost: (why) => (log.fatal(`data dir ${paths.root}: ${why}; stopping`), opts.onFatal?.(why)) }));
  manager.add({ name: 'server record', start: () => writeRecord({ api: api.url, nodeId: self, name: settings.name, dataDir: paths.root, pid: process.pid, startedAt: new Date().toISOString() }, opts.env), stop: () => removeRecord(api.url, process.pid, opts.env) });
  await manager.start();
  api.open();

  return { nodeId: self, name: settings.name, apiUrl: api.url, token, settings, service, store, log: clusterLog, metrics: registry, formats, skippedDrivers: enabled.skipped, stop: () => manager.stop() };
}

/** What this node's replica of a document holds, every author's entries (GET /v1/debug/documents). */
async function debugDocument(docs: Documents, doc: string, prefix: string): Promise<unknown> {
  const d = docs.current;
  if (!d) throw new ApiError('not-found', 'the documents are not open yet');
  if (doc !== 'cluster' && doc !== 'status') throw new ApiError('not-found', `no document ${doc} (cluster or status)`);
  return (doc === 'cluster' ? d.cluster : d.status).dump(prefix);
}
