import { randomUUID } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { ApiError, createApiServer, dispatch, removeRecord, writeRecord } from '../api/index.js';
import { HoldingsPublisher, ImageCache, ImageMetrics, ImageStore, Prefetcher, TransferLimiter, holdersOf as imageHolders } from '../images/index.js';
import { ALPN, IrohRaftTransport, P2PMetrics, PeerManager, ProtocolRouter, RpcClient, serveRpc, startIroh } from '../p2p/index.js';
import { RaftNode } from '../raft/index.js';
import { writeFileAtomic } from '../storage/index.js';
import { NodeReconciler, type LaunchedVm, type ReportedVm } from '../reconciler/index.js';
import { DesiredStateStore, parseBytes, parseDuration, parseRate, type ClusterDocs, type NodeRecord, type PeerSpec, type PlacementRecord } from '../state/index.js';
import { clusterDocChanges, clusterDocEntries, DocDesiredView } from './cluster-publish.js';
import { Coalescer } from './coalescer.js';
import { NodeDocs } from './docs.js';
import { WorkerLog } from './worker-log.js';
import { enabledDrivers, fenceFile } from '../vm/index.js';
import { NodeBackend, type JoinResponse } from './backend.js';
import { dataPaths, loadOrCreateIdentity, loadOrCreateToken, lockDataDir } from './datadir.js';
import { readMembership, writeMembership, type Membership } from './membership.js';
import { SchedulingLoop } from './scheduling.js';
import { resolveSettings, saveSettings, type NodeSettings, type SettingFlags } from './settings.js';
import { decodeTicket } from './ticket.js';
import { desiredVoters, leadershipTarget, nextConfChange } from './voters.js';

// The composition root (DESIGN.md): builds a node from its data dir and flags, and starts and
// stops its parts in order. Everything here is wiring; behaviour lives in the parts.

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

/** What a node needs of its consensus: a Raft node for voters, the cluster document for workers. */
type Consensus = RaftNode | WorkerLog;

export interface RunningNode {
  nodeId: string;
  name: string;
  apiUrl: string;
  token: string;
  settings: NodeSettings;
  backend: NodeBackend;
  store: DesiredStateStore;
  raft: Consensus;
  metrics: Registry;
  /** Image formats this node's drivers run, and the drivers it could not enable (and why). */
  formats: string[];
  skippedDrivers: { name: string; why: string }[];
  stop(): Promise<void>;
}

export class StartupError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'StartupError';
  }
}

/** How long one step of stopping may take before the next goes ahead anyway. */
const CLEANUP_STEP_MS = 10_000;

/** How often the leader looks at membership, and every node at its peers. */
const DOC_RESYNC_MS = 10_000;
/**
 * Content missing this long is fetched by hand (Iroh's own try normally lands in milliseconds; when
 * it fails, a VM's newest status stayed unseen for 2-3 s with 2 s here). Checked this often; a
 * check with nothing missing costs a scan of an empty map.
 */
const CONTENT_REPAIR_AFTER_MS = 500;
const CONTENT_REPAIR_EVERY_MS = 250;
const MEMBERSHIP_INTERVAL_MS = 500;

export async function startNode(opts: StartOptions): Promise<RunningNode> {
  const { log } = opts;
  const paths = dataPaths(opts.dataDir);
  await mkdir(paths.root, { recursive: true, mode: 0o700 });
  const unlock = await lockDataDir(paths.root);
  const cleanups: (() => Promise<void>)[] = [unlock];
  // Set first thing on the way down: the parts still running (Raft applies until it is closed,
  // after the documents) must not start new work on what is already closed.
  let stopping = false;
  const cleanup = async () => {
    stopping = true;
    for (const [i, c] of cleanups.reverse().entries()) {
      // One step that never finishes (a peer that does not answer a close, a connection that
      // stays open) must not keep the node from stopping: it is logged and the rest goes on.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), CLEANUP_STEP_MS)));
      const done = c().then(
        () => 'done' as const,
        (e: unknown) => void log.warn({ err: e }, 'cleanup failed'),
      );
      if ((await Promise.race([done, late])) === 'late') log.warn({ step: i, of: cleanups.length, what: c.toString().slice(0, 120) }, `a cleanup step did not finish within ${CLEANUP_STEP_MS / 1000} s; going on`);
      clearTimeout(timer);
    }
  };
  try {
    const { settings, problems } = await resolveSettings(paths.root, opts.flags);
    if (problems.length > 0) throw new StartupError(problems.join('\n'), 2);
    const identity = await loadOrCreateIdentity(paths.root);
    const self = identity.nodeId;
    const token = await loadOrCreateToken(paths.root);
    await saveSettings(paths.root, settings);

    let membership = await readMembership(paths.root);
    const ticket = opts.join ? decodeTicketOrFail(opts.join) : undefined;
    if (membership) {
      if (opts.bootstrap) log.warn(`--bootstrap ignored: this data dir already belongs to cluster ${membership.clusterId}`);
      if (ticket && ticket.cluster !== membership.clusterId) {
        throw new StartupError(`--join: the ticket is for cluster ${ticket.cluster}, but this data dir belongs to cluster ${membership.clusterId}`, 2);
      }
      if (ticket) log.warn('--join ignored: this data dir is already a member of that cluster');
    } else if (opts.bootstrap && ticket) throw new StartupError('--bootstrap and --join exclude each other: create a cluster, or join one', 2);

    const registry = new Registry();
    collectDefaultMetrics({ register: registry, prefix: 'blixard_process_' });
    const p2pMetrics = new P2PMetrics(registry);
    // Errors of background tasks are never swallowed: logged with context, counted in metrics,
    // and shown by `blixard status` (the last ones).
    let recordError: (component: string, err: unknown) => void = () => {};
    // Watches hear of changes through this (set once the backend exists).
    let changed: (names: Iterable<string> | null) => void = () => {};
    const bgError = (component: string, level: 'warn' | 'debug' = 'warn') => (err: unknown) => {
      const message = (err as Error)?.message ?? String(err);
      log[level]({ component, err: message }, `${component} failed`);
      p2pMetrics.errors.inc({ component });
      if (level === 'warn') recordError(component, err);
    };

    // Who may talk to us: admitted nodes (Peers and joined nodes in the store), the members a join
    // told us of, and, while this data dir belongs to no cluster yet, the cluster that admits it
    // by a Peer manifest (trust on first use: the first leader to replicate to us).
    const store = new DesiredStateStore();
    const trusted = new Set<string>((membership?.trusted ?? []).map((t) => t.nodeId));
    if (ticket) trusted.add(ticket.leader.nodeId);
    const admitted = (id: string) => store.admitted(id) || trusted.has(id) || (store.clusterId === null && !ticket && !opts.bootstrap);
    // A peer that dials us afresh may be a restarted process: cached outgoing RPC connections to
    // its old incarnation are dropped (set once the RPC client exists).
    let peerDialledUs: (nodeId: string) => void = () => {};
    const p2pOff = settings.p2p === 'off';
    if (p2pOff && ticket && !membership) throw new StartupError('--join: this node runs with --p2p off and joins nothing (use --p2p on)', 2);
    const router = new ProtocolRouter((id, alpn) => !p2pOff && (alpn === ALPN.api || admitted(id)), {
      accepted: (alpn, remote) => {
        p2pMetrics.connections.inc({ protocol: alpn, result: 'accepted' });
        peerDialledUs(remote);
      },
      refused: (alpn, remote, why) => {
        p2pMetrics.connections.inc({ protocol: alpn, result: 'refused' });
        log.debug({ alpn, remote, why }, 'connection refused');
      },
      error: (alpn, remote, err) => log.debug({ alpn, remote, err: (err as Error)?.message }, 'protocol handler ended'),
    });

    // Iroh takes a second or more to bind (it probes the network). The API opens only once
    // everything is up, so whoever gets an answer from it may rely on the whole node.
    const iroh = await startIroh({ dir: paths.iroh, secretKey: identity.secretKey, listen: settings.listen, discovery: settings.discovery, protocols: router.irohProtocols() });
    cleanups.push(() => iroh.node.shutdown());
    const endpoint = () => iroh.node.endpoint();
    // The QUIC port the OS chose on first start is kept, so peers find the node where it was.
    if (/:0$/.test(settings.listen)) {
      const host = settings.listen.slice(0, settings.listen.lastIndexOf(':'));
      const bound = (await iroh.net.nodeAddr()).addresses?.find((a) => a.startsWith(`${host}:`) || a.startsWith(`[${host.replace(/^\[|\]$/g, '')}]:`));
      if (bound) {
        settings.listen = bound;
        await saveSettings(paths.root, settings);
      }
    }
    // Images: pieces in Iroh's blob store (what peers fetch), files for hypervisors, an index.
    const images = await ImageStore.open({ dir: path.join(paths.root, 'images'), iroh, log });
    const imageMetrics = await ImageMetrics.create(registry);
    const holdings = new HoldingsPublisher({ onError: bgError('publish-image-holdings') });
    cleanups.push(async () => holdings.stop());
    const limiter = new TransferLimiter({ bytesPerSec: settings.maxTransferRate ? parseRate(settings.maxTransferRate) : null, burstBytes: images.pieceSize });
    const addresses = async () => (await iroh.net.nodeAddr()).addresses ?? [];
    const author = (await iroh.authors.default()).toString();
    const rpc = new RpcClient(endpoint, { metrics: p2pMetrics });
    peerDialledUs = (id) => rpc.forgetPeer(id);
    cleanups.push(async () => rpc.close());

    // The hypervisor drivers this machine can run; the formats they run are what the node offers.
    const enabled = await enabledDrivers(paths.root, settings.hypervisor);
    for (const sk of enabled.skipped) {
      if (settings.hypervisor !== 'auto') throw new StartupError(`--hypervisor ${settings.hypervisor}: the ${sk.name} driver cannot run here: ${sk.why}`, 2);
      log.warn({ driver: sk.name, why: sk.why }, 'driver not available; VMs needing it will not be placed here');
    }
    const formats = [...new Set(enabled.drivers.flatMap((d) => d.formats))].sort();
    const record = async (api: string | null, registeredAt: string): Promise<NodeRecord> => ({
      nodeId: self,
      name: settings.name,
      role: membership?.role ?? settings.role,
      api,
      addresses: await addresses(),
      labels: settings.labels,
      capacity: { vcpus: settings.vcpus, memoryMiB: settings.memoryMiB },
      formats,
      author,
      registeredAt,
      updatedAt: new Date().toISOString(),
    });

    // A new data dir with a ticket joins before anything else: the leader admits it and tells it
    // the members, the documents and its role.
    if (!membership && ticket) {
      if (ticket.expiresAt <= new Date().toISOString()) throw new StartupError(`--join: the ticket expired at ${ticket.expiresAt}; ask for a new one (blixard node ticket)`, 2);
      const res = await rpc
        .call(ticket.leader, { method: 'POST', path: '/v1/join', body: { secret: ticket.secret, node: await record(null, new Date().toISOString()) } }, 30_000)
        .catch((e: unknown) => {
          throw new StartupError(`--join: cannot reach the node in the ticket (${ticket.leader.nodeId.slice(0, 10)} at ${ticket.leader.addresses.join(', ')}): ${(e as Error).message}`, 3);
        });
      if (res.status !== 200) {
        const msg = (res.body as { error?: { message?: string } })?.error?.message ?? `status ${res.status}`;
        throw new StartupError(`--join: refused: ${msg}`, res.status === 401 ? 5 : 1);
      }
      const j = res.body as JoinResponse;
      membership = { clusterId: j.clusterId, role: j.role, docs: j.docs, trusted: [ticket.leader, ...j.members.filter((m) => m.nodeId !== self)], since: new Date().toISOString() };
      for (const t of membership.trusted) trusted.add(t.nodeId);
      await writeMembership(paths.root, membership);
      log.info({ clusterId: j.clusterId, role: j.role }, 'joined the cluster');
    }
    const isWorker = membership?.role === 'worker';

    // The leader publishes the committed state into the cluster document (coalesced, in order).
    // After one full pass, only what the store says changed since is written: a pass over 20,000
    // resources on every commit was a third of the leader's time under load. A new leadership
    // or a failed pass starts again with a full one.
    let publishing: Promise<void> = Promise.resolve();
    let publishedRev = -1;
    let publishAll = true;
    function publish(): Promise<void> {
      // (declared before the Raft node: its callbacks may call this as soon as it opens)
      publishing = publishing.then(async () => {
        if (stopping || !docs?.publisher || !raft.isLeader || publishedRev === raft.appliedIndex) return;
        const rev = raft.appliedIndex;
        const changes = store.takeChanges();
        try {
          if (changes === 'all' || publishAll || !docs.publisher.ready) {
            publishAll = false;
            const entries = clusterDocEntries(store);
            entries.set('meta/cluster', { clusterId: store.clusterId, leader: self });
            await docs.publisher.publish(entries, rev);
          } else {
            await docs.publisher.update(clusterDocChanges(store, changes), rev);
          }
        } catch (e) {
          publishAll = true;
          throw e;
        }
        publishedRev = rev;
      }).catch(bgError('publish-cluster-document'));
      return publishing;
    }

    // Where to reach a node: its record, its Peer manifest, what a join told us.
    const addressesOf = (id: string): string[] => {
      const rec = store.node(id)?.addresses ?? [];
      const peer = store.list('Peer').find((p) => (p.spec as PeerSpec).nodeId === id);
      const t = membership?.trusted.find((x) => x.nodeId === id)?.addresses ?? (ticket?.leader.nodeId === id ? ticket.leader.addresses : []);
      return [...new Set([...rec, ...(((peer?.spec as PeerSpec | undefined)?.addresses ?? []) as string[]), ...t])];
    };
    // The documents: opened once this node knows their tickets (a voter from its store, a worker
    // from its membership); the cluster document drives a worker's view of the desired state.
    let docs: NodeDocs | undefined;
    let docsOpening: Promise<NodeDocs> | undefined;
    let docsLoaded: () => void = () => {};
    const docsReady = new Promise<void>((r) => (docsLoaded = r));
    const openDocs = (tickets: ClusterDocs, canPublish: boolean): Promise<NodeDocs> =>
      (docsOpening ??= NodeDocs.open({
        iroh,
        self,
        docs: tickets,
        canPublish,
        authorOf: (id) => store.node(id)?.author,
        onClusterChange: () => {
          if (isWorker) mirrorCluster();
        },
        onStatusChange: (keys) => {
          prefetcher.holdingsChanged();
          // status/<node>/vm/<name>: that VM's status; anything else (a heartbeat): any VM's.
          const vms = keys.map((k) => /^status\/[^/]+\/vm\/(.+)$/.exec(k)?.[1]);
          changed(vms.every((v) => v !== undefined) ? (vms as string[]) : null);
        },
        // Every node this one knows of: opened from disk, the documents sync with them at once.
        peers: [...new Set([...store.listNodes().map((n) => n.nodeId), ...trusted])].filter((id) => id !== self).map((id) => ({ nodeId: id, addresses: addressesOf(id) })),
        metrics: p2pMetrics,
        onError: (doc, err) => bgError(`document-${doc}`)(err),
      }).then((d) => {
        docs = d;
        if (isWorker) mirrorCluster();
        docsLoaded();
        holdings.attach(d.writer);
        void prefetcher.publishHoldings().catch(bgError('publish-image-holdings'));
        warmCache();
        cleanups.push(() => d.close());
        log.info({ cluster: tickets.clusterId.slice(0, 10), status: tickets.statusId.slice(0, 10) }, 'documents open');
        return d;
      }, (e: unknown) => {
        // A failed open is tried again by the next caller (the leader-duties loop, or the retry below).
        docsOpening = undefined;
        throw e;
      }));
    // A worker's store is a mirror of the cluster document (rebuilt, coalesced, as it changes).
    const mirror = new Coalescer(() => {
      if (!docs) return;
      const view = new DocDesiredView(docs.clusterView);
      store.load(
        { version: 1, clusterId: view.clusterId, resources: view.list(), nodes: view.listNodes(), applysets: [], appliedPlans: [], joinSecrets: [], placements: docs.clusterView.list<PlacementRecord>('placement/').map((e) => e.value), docs: null },
        docs.clusterView.rev,
      );
      if (started) afterApply();
    }, 20);
    function mirrorCluster(): void {
      if (docs) mirror.kick();
    }

    // Raft: every voter, and a new data dir waiting to be admitted (the leader replicates to it).
    // A worker follows the cluster document instead. Callbacks wait for `started`.
    let started = false;
    let leaderSince = 0;
    const startedAt = Date.now();
    const transport = new IrohRaftTransport(endpoint, router, { metrics: p2pMetrics });
    const bootstrap = !membership && opts.bootstrap;
    const raft: Consensus = isWorker
      ? new WorkerLog({
          leader: () => docs?.clusterView.get<{ leader?: string | null }>('meta/cluster')?.leader ?? null,
          voters: () => store.listNodes().filter((n) => n.role === 'voter').map((n) => n.nodeId),
          rev: () => docs?.clusterView.rev ?? 0,
          loaded: () => docsReady,
        })
      : await RaftNode.open({
      dir: path.join(paths.state, 'raft'),
      id: self,
      transport,
      sm: store,
      ...(bootstrap ? { bootstrap: { voters: [self], learners: [] } } : {}),
      onWarning: (m) => log.warn(m),
      onRoleChange: (role, leader, term) => {
        log.info({ role, leader, term }, 'raft role');
        leaderSince = role === 'leader' ? Date.now() : 0;
        if (role === 'leader') {
          // Other leaders may have written the cluster document since this node last did.
          publishAll = true;
          docs?.publisher?.reset();
        }
        if (started) onLeadership();
      },
      onConfChange: () => {
        if (started) refreshPeers();
      },
      onApplied: () => {
        if (started) afterApply();
      },
    });
    cleanups.push(() => raft.close());
    if (raft instanceof RaftNode) registerRaftMetrics(registry, raft);
    if (isWorker) void openDocs(membership!.docs!, false).catch(bgError('open-documents'));
    // The only voter need not wait out an election timeout: nobody else can win.
    const alone = () => raft.membership.voters.length === 1 && raft.membership.voters[0] === self && (raft.membership.votersOutgoing ?? []).length === 0;
    if (alone()) raft.campaign();

    const peers = new PeerManager({
      endpoint,
      router,
      metrics: p2pMetrics,
      // A peer that is down is news only while it lasts: logged at debug, counted (the peers
      // table of `status` shows the last error per peer).
      onError: (_id, err) => bgError('peer-connection', 'debug')(err),
      onChange: (h) => {
        // A session that dropped says the peer may be gone or restarted: so may the RPC connection.
        if (!h.connected) rpc.forgetPeer(h.nodeId);
        // A session that came back (either side restarted, or a partition healed): the documents
        // sync with it now rather than wait for someone to write.
        else if (docs) void docs.syncWith([{ nodeId: h.nodeId, addresses: addressesOf(h.nodeId) }]).catch(bgError('document-sync', 'debug'));
      },
    });
    cleanups.push(async () => peers.stop());
    // A node is ready when it heartbeats in the status document (or, before documents, answers
    // pings); it is NotReady once its heartbeat is older than --node-timeout.
    const nodeTimeoutMs = parseDuration(settings.nodeTimeout);
    // When this node saw each node's heartbeat change, by its own clock: liveness must not rest
    // on another machine's clock (a node whose clock runs ahead would look alive for longer). A
    // heartbeat seen for the first time counts from the time it carries (at most now).
    const beats = new Map<string, { time: string; at: number }>();
    function observeBeats(): void {
      for (const id of docs?.statusView.nodes() ?? []) {
        const hb = docs!.statusView.get<{ time: string }>(id, 'node');
        if (!hb || typeof hb.time !== 'string') continue;
        const prev = beats.get(id);
        if (!prev) beats.set(id, { time: hb.time, at: Math.min(Date.now(), Date.parse(hb.time) || 0) });
        else if (prev.time !== hb.time) beats.set(id, { time: hb.time, at: Date.now() });
      }
    }
    const beatWatch = setInterval(observeBeats, 250);
    beatWatch.unref();
    cleanups.push(async () => clearInterval(beatWatch));
    const nodeReady = (id: string): boolean => {
      if (id === self) return true;
      observeBeats();
      const b = beats.get(id);
      if (b) return Date.now() - b.at < nodeTimeoutMs;
      return peers.get(id)?.connected ?? false;
    };
    // Where to reach every node we know of: node records, Peer manifests, what a join told us.
    function refreshPeers(): void {
      const conf = raft.membership;
      // The members, and what a join told us (a new learner knows no configuration until the
      // leader's snapshot arrives, but must answer it).
      const members = new Set([...conf.voters, ...conf.learners, ...(conf.votersOutgoing ?? []), ...(membership?.trusted ?? []).map((t) => t.nodeId)]);
      members.delete(self);
      transport.setPeers([...members].map((id) => ({ nodeId: id, addresses: addressesOf(id) })));
      const known = new Set<string>([...members, ...store.listNodes().map((n) => n.nodeId)]);
      for (const p of store.list('Peer')) known.add((p.spec as PeerSpec).nodeId);
      known.delete(self);
      peers.setPeers([...known].map((id) => ({ nodeId: id, name: store.node(id)?.name ?? id.slice(0, 10), addresses: addressesOf(id) })));
    }
    started = true;
    refreshPeers();

    const forward = async (method: string, p: string, body?: unknown): Promise<unknown> => {
      // A worker may not know the leader (or its news may be stale): any voter forwards again.
      const leader = raft.leader ?? (isWorker ? (raft.membership.voters[0] ?? membership?.trusted[0]?.nodeId ?? null) : null);
      if (!leader) throw new ApiError('no-leader', 'no leader is known right now; try again in a moment');
      if (leader === self) throw new ApiError('no-leader', 'leadership is changing; try again');
      const res = await rpc.call({ nodeId: leader, addresses: addressesOf(leader) }, { method, path: p, ...(body !== undefined ? { body } : {}) }).catch((e: unknown) => {
        throw new ApiError('no-leader', `cannot reach the leader ${store.node(leader)?.name ?? leader.slice(0, 10)}: ${(e as Error).message}`);
      });
      if (res.status >= 400) {
        const e = (res.body as { error?: { code?: string; message?: string; details?: unknown } })?.error;
        throw new ApiError((e?.code as ApiError['code']) ?? 'internal', e?.message ?? `leader answered ${res.status}`, e?.details);
      }
      return res.body;
    };

    // Which nodes hold which image: each node publishes its holdings (whole, or the pieces it has
    // so far) in the status document; downloads spread pieces over every node that has them.
    const prefetcher = new Prefetcher({
      self,
      store: images,
      status: () => docs?.statusView,
      publisher: holdings,
      addressOf: (id) => {
        const a = addressesOf(id);
        return a.length > 0 ? { nodeId: id, addresses: a } : undefined;
      },
      limiter,
      metrics: imageMetrics,
      log,
    });
    cleanups.push(() => prefetcher.stop());
    const holdersOf = (hash: string): string[] => (docs ? imageHolders(docs.statusView, hash) : []);
    /** The image content every VM placed on this node (or still on its drivers) needs. */
    const imagesInUse = (): string[] => {
      const out: string[] = [];
      for (const v of store.list('VirtualMachine')) {
        if (store.placement(v.metadata.name)?.nodeId !== self && !reconciler.report(v.metadata.name)) continue;
        const img = store.get('Image', (v.spec as { image: string }).image);
        for (const h of [img?.source?.hash, img?.source?.initrdHash]) if (h) out.push(h);
      }
      return out;
    };
    const cache = new ImageCache({
      store: images,
      limitBytes: settings.imageCacheSize ? parseBytes(settings.imageCacheSize) : null,
      inUse: imagesInUse,
      fetching: (h) => prefetcher.fetching(h),
      metrics: imageMetrics,
      log,
    });
    cleanups.push(async () => cache.stop());
    /** --prefetch all: every image of the cluster, in the background, behind what VMs wait for. */
    function warmCache(): void {
      if (settings.prefetch !== 'all' || !docs) return;
      prefetcher.warm(store.list('Image').flatMap((i) => [i.source?.hash, i.source?.initrdHash].filter((h): h is string => !!h)));
    }

    // Fencing (SPEC section 4): a node cut off from the cluster for longer than --fence-after stops
    // its own VMs; it starts nothing unless it is in touch and caught up.
    function clusterContact(): number {
      if (raft instanceof RaftNode) return raft.lastClusterContact;
      let last = 0;
      for (const h of peers.list()) if (store.node(h.nodeId)?.role === 'voter' && h.lastSeen) last = Math.max(last, Date.parse(h.lastSeen));
      return last;
    }
    // When this node last lost touch, or started: it starts nothing until it has proof that its
    // view is current as of after that moment. A worker: a sync of the cluster document that
    // finished later. A voter: a ReadIndex round (the leader confirms its commit index with a
    // quorum) that completed later, with everything up to that index applied here. The start
    // counts as a loss of touch: the store on disk may be old (VMs may have moved meanwhile).
    let outOfTouchAt = Date.now();
    let confirmedAt = 0;
    let confirming = false;
    let lastGateAt = Date.now();
    function gate(): { fenced: boolean; mayStart: boolean; why?: string } {
      const now = Date.now();
      // A stalled event loop is time out of touch too, whatever the last message said.
      if (now - lastGateAt > nodeTimeoutMs) outOfTouchAt = now;
      lastGateAt = now;
      if (store.clusterId === null) return { fenced: false, mayStart: false, why: 'not in a cluster yet' };
      const since = now - Math.max(clusterContact(), startedAt);
      const fenced = since > fenceAfterMs;
      if (since > nodeTimeoutMs) outOfTouchAt = now;
      let caughtUp: boolean;
      if (raft instanceof RaftNode) {
        caughtUp = raft.leader !== null && confirmedAt > outOfTouchAt;
        if (!caughtUp && !fenced && !confirming && raft.leader !== null) {
          const asked = now;
          confirming = true;
          raft
            .readBarrier(Math.min(2000, nodeTimeoutMs))
            .then(
              () => (confirmedAt = asked),
              () => {},
            )
            .finally(() => (confirming = false));
        }
      } else caughtUp = since < nodeTimeoutMs && (docs?.clusterView.lastSyncAt ?? 0) > outOfTouchAt;
      return { fenced, mayStart: !fenced && caughtUp, why: fenced ? `no contact for ${Math.round(since / 1000)} s` : caughtUp ? undefined : 'catching up' };
    }
    // The gate is a matter of time: look again when it changes.
    let lastGate = '';
    let syncAskedAt = 0;
    const gateWatch = setInterval(() => {
      const g = gate();
      // A worker back in touch asks the voters for a fresh sync of the documents (the proof that
      // its view is current, before it starts anything).
      if (isWorker && docs && !g.fenced && !g.mayStart && Date.now() - syncAskedAt > 2_000) {
        syncAskedAt = Date.now();
        const voters = store.listNodes().filter((n) => n.role === 'voter').map((n) => ({ nodeId: n.nodeId, addresses: addressesOf(n.nodeId) }));
        void docs.syncWith(voters).catch(bgError('document-sync'));
      }
      const key = `${g.fenced}/${g.mayStart}`;
      if (key !== lastGate) {
        if (g.fenced) log.warn({ why: g.why }, 'fenced: cut off from the cluster; stopping local VMs');
        else if (lastGate.startsWith('true')) log.info('in touch with the cluster again');
        lastGate = key;
        reconciler.kick();
      }
    }, 500);
    gateWatch.unref();
    cleanups.push(async () => clearInterval(gateWatch));

    const ledgerFile = path.join(paths.root, 'vms', 'launched.json');
    const reconciler: NodeReconciler = new NodeReconciler({
      nodeId: self,
      nodeName: settings.name,
      view: () => store,
      drivers: enabled.drivers,
      // Prefetch: a VM placed here gets its image from every node that has pieces of it.
      images: {
        ...prefetcher.access(),
        pull: async (hashes, vm, onProgress) => {
          await prefetcher.pull(hashes, vm, onProgress);
          cache.kick();
        },
      },
      ledger: {
        load: async () => JSON.parse(await readFile(ledgerFile, 'utf8').catch(() => '{}')) as Record<string, LaunchedVm>,
        save: async (all) => {
          await mkdir(path.dirname(ledgerFile), { recursive: true });
          await writeFileAtomic(ledgerFile, JSON.stringify(all, null, 1), { mode: 0o600, sync: 'all' });
        },
      },
      gate: () => gate(),
      report: (name, r) => {
        changed([name]);
        if (!docs) return;
        const write = r ? docs.writer.set(`vm/${name}`, r) : docs.writer.remove(`vm/${name}`);
        write.catch(bgError('write-vm-status'));
      },
      event: (name, e) => {
        backend.event('VirtualMachine', name, e.type, e.reason, e.message);
        if (e.reason === 'Failed') bgError(`reconcile VirtualMachine/${name}`)(new Error(e.message));
      },
      log,
    });

    const [apiHost, apiPortText] = splitHostPort(settings.api);
    let apiUrl = '';
    // Liveness as the leader sees it (SPEC section 4): NotReady after --node-timeout without a
    // heartbeat; lost (its VMs may run elsewhere) only after --node-timeout plus --fence-after,
    // counted from when this node became leader at the earliest (a new leader first gives every
    // node a chance to heartbeat to it, whatever old heartbeats in the document say).
    const fenceAfterMs = parseDuration(settings.fenceAfter);
    const nodeLost = (id: string): boolean => {
      if (id === self) return false;
      observeBeats();
      const b = beats.get(id);
      if (!b) return false;
      return Date.now() - Math.max(b.at, leaderSince) > nodeTimeoutMs + fenceAfterMs;
    };
    const vmGone = (id: string, vm: string): boolean => docs?.statusView.get(id, `vm/${vm}`) === undefined;
    const scheduling = new SchedulingLoop(store, { schedulable: nodeReady, lost: nodeLost, vmGone }, (cmd) => backend.propose(cmd), () => backend.isLeader, log);
    const backend: NodeBackend = new NodeBackend({
      nodeId: self,
      settings,
      store,
      log: raft,
      blobs: {
        has: (h) => images.has(h),
        importStream: async (h, body) => {
          const r = await images.importStream(h, body);
          cache.kick();
          return r;
        },
      },
      transfers: () => prefetcher.transfers(),
      addresses,
      apiUrl: () => apiUrl,
      vms: reconciler,
      forward,
      nodeReady,
      remoteVm: (nodeId, vm) => docs?.statusView.get<ReportedVm>(nodeId, `vm/${vm}`),
      holders: (h) => holdersOf(h),
      peerHealth: () => peers.list().map((h) => ({ nodeId: h.nodeId, name: h.name, connected: h.connected, rttMs: h.rttMs, lastSeen: h.lastSeen, lastError: h.lastError })),
      addLearner: async (id) => {
        refreshPeers();
        if (!raft.membership.voters.includes(id) && !raft.membership.learners.includes(id)) await raft.proposeConfChange({ changes: [{ type: 'addLearner', node: id }] }).catch(bgError('add-learner', 'debug'));
      },
    });
    // Work that follows changes to the store, coalesced: at thousands of writes per second it runs
    // a few dozen times per second, not once per write.
    const afterApplyRun = new Coalescer(() => {
      if (stopping) return;
      scheduling.kick();
      reconciler.desiredChanged();
      refreshPeers();
      if (raft.isLeader) void publish();
      warmCache();
      cache.kick();
      changed(null);
    }, 20);
    function afterApply(): void {
      if (!stopping) afterApplyRun.kick();
    }
    cleanups.push(async () => afterApplyRun.cancel());

    recordError = (component, err) => backend.recordError(component, err);
    changed = (names) => backend.changed(names);

    // Node-to-node API: followers forward to the leader, joining nodes present their secret.
    serveRpc(router, async (req, remote) => {
      if (!admitted(remote) && !(req.method === 'POST' && req.path === '/v1/join')) {
        return { status: 401, body: new ApiError('unauthorized', 'not admitted to this cluster').toJSON() };
      }
      try {
        return { status: 200, body: await dispatch(backend, req.method, req.path, req.body, remote) };
      } catch (e) {
        const err = e instanceof ApiError ? e : new ApiError('internal', (e as Error).message);
        return { status: err.status, body: err.toJSON() };
      }
    }, { metrics: p2pMetrics });

    const debugDocument = async (doc: string, prefix: string) => {
      if (!docs) throw new ApiError('not-found', 'the documents are not open yet');
      if (doc !== 'cluster' && doc !== 'status') throw new ApiError('not-found', `no document ${doc} (cluster or status)`);
      return (doc === 'cluster' ? docs.cluster : docs.status).dump(prefix);
    };
    const server = createApiServer({ token, backend, metrics: () => registry.metrics(), debugDocument, onError: (err, req) => log.error({ err, ...req }, 'API request failed') });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) =>
        reject(e.code === 'EADDRINUSE' ? new StartupError(`--api ${settings.api} is in use (another node? choose another with --api HOST:PORT)`) : e),
      );
      server.listen(Number(apiPortText), apiHost, () => resolve());
    });
    apiUrl = `http://${apiHost.includes(':') ? `[${apiHost}]` : apiHost}:${(server.address() as AddressInfo).port}`;
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        }),
    );

    // A new cluster: once this node leads its one-voter configuration, the first entry names it.
    if (bootstrap) {
      await waitFor(() => raft.isLeader, 10_000, 'leadership of the new cluster');
      const now = new Date().toISOString();
      const tickets = await NodeDocs.create(iroh);
      await backend.propose({ op: 'bootstrap', time: now, clusterId: randomUUID(), node: await record(apiUrl, now), docs: tickets });
      membership = { clusterId: store.clusterId!, role: 'voter', docs: null, trusted: [], since: now };
      await writeMembership(paths.root, membership);
      log.info({ clusterId: store.clusterId }, 'bootstrapped a new cluster');
    } else if (!membership) {
      log.warn(`waiting to be admitted: apply a Peer with nodeId ${self} on the cluster, or restart with --join TICKET`);
    } else {
      // Give a restarted cluster a moment to find its leader, so the first answers are useful;
      // without a quorum the node still serves (status says there is no leader).
      await waitFor(() => raft.leader !== null, alone() ? 5_000 : 3_000, 'a leader').catch(() => log.warn('no leader yet; serving anyway'));
    }

    // Leader duties, re-checked on an interval: Raft membership follows the admitted voters, and
    // this node's own record stays current (API and Iroh addresses change between runs).
    let registered = false;
    const duties = setInterval(() => void leaderDuties().catch(bgError('membership')), MEMBERSHIP_INTERVAL_MS);
    duties.unref();
    cleanups.push(async () => clearInterval(duties));
    function onLeadership(): void {
      if (raft.isLeader) void leaderDuties().catch(bgError('membership'));
    }
    async function leaderDuties(): Promise<void> {
      refreshPeers();
      // A worker's documents are its whole view of the cluster: a failed open is tried again here.
      if (!docs && isWorker && membership?.docs) await openDocs(membership.docs, false);
      if (store.clusterId === null) return;
      if (!membership) {
        // Admitted through a Peer manifest: the replicated log now says which cluster and role.
        const mine = store.list('Peer').find((p) => (p.spec as PeerSpec).nodeId === self);
        membership = { clusterId: store.clusterId, role: ((mine?.spec as PeerSpec | undefined)?.role ?? 'voter') as Membership['role'], docs: null, trusted: [], since: new Date().toISOString() };
        await writeMembership(paths.root, membership);
        log.info({ clusterId: store.clusterId }, 'admitted to the cluster');
      }
      if (!registered && raft.leader) {
        const prev = store.node(self);
        const rec = await record(apiUrl, prev?.registeredAt ?? new Date().toISOString());
        if (!prev || JSON.stringify({ ...prev, updatedAt: '', registeredAt: '' }) !== JSON.stringify({ ...rec, updatedAt: '', registeredAt: '' })) {
          if (raft.isLeader) await backend.propose({ op: 'registerNode', time: new Date().toISOString(), node: rec });
          else await forward('POST', '/v1/nodes/register', rec);
        }
        registered = true;
      }
      if (!docs && !isWorker && store.docs) await openDocs(store.docs, true);
      if (!raft.isLeader || !(raft instanceof RaftNode)) return;
      await publish();
      const st = raft.status();
      const want = desiredVoters(store);
      const view = { progress: (id: string) => st.progress?.[id], commit: st.commit };
      const heir = leadershipTarget(raft.membership, want, self, view);
      if (heir) {
        log.info({ to: heir }, 'this node is no longer a voter: handing leadership over');
        raft.transferLeadership(heir);
        return;
      }
      const cc = nextConfChange(raft.membership, want, self, view);
      if (cc) {
        log.info({ change: cc.changes }, 'membership change');
        await raft.proposeConfChange(cc).catch((e: unknown) => log.debug({ err: (e as Error).message }, 'membership change not taken now'));
      }
    }

    // The dead man's switch of this node's VMs (vm/supervise.ts): refreshed every second; should
    // this daemon die and stay dead for --fence-after, each shim stops its VM before the leader
    // (after --node-timeout plus --fence-after) runs it elsewhere. A cluster of one node has
    // nowhere else to run them: there, VMs simply keep running until the daemon is back.
    const fenceSeconds = Math.max(1, Math.ceil(fenceAfterMs / 1000));
    const deadMansSwitch = async (): Promise<void> => {
      const others = settings.p2p === 'on' && store.listNodes().some((n) => n.nodeId !== self);
      const file = fenceFile(paths.root);
      await mkdir(path.dirname(file), { recursive: true });
      await writeFileAtomic(file, `${others ? fenceSeconds : 0}\n`);
    };
    await deadMansSwitch();
    const switchTimer = setInterval(() => void deadMansSwitch().catch(bgError('vm-fence-file')), 1000);
    switchTimer.unref();
    cleanups.push(async () => clearInterval(switchTimer));

    // Anti-entropy: documents sync live by gossip, which carries no guarantee while the swarm
    // changes; every node asks every node it knows for a sync now and then (Iroh's range-based
    // set reconciliation: cheap when nothing differs).
    const knownPeers = () =>
      [...new Set([...store.listNodes().map((n) => n.nodeId), ...trusted])]
        .filter((id) => id !== self)
        .map((id) => ({ nodeId: id, addresses: addressesOf(id) }))
        .filter((a) => a.addresses.length > 0);
    const antiEntropy = setInterval(() => {
      if (!docs || settings.p2p === 'off') return;
      void docs.syncWith(knownPeers()).catch(bgError('document-sync', 'debug'));
    }, DOC_RESYNC_MS);
    antiEntropy.unref();
    cleanups.push(async () => clearInterval(antiEntropy));
    // Entries whose content Iroh did not fetch with them (its one try, from the peer that sent
    // the entry, failed) are fetched here; otherwise a view keeps the older value indefinitely.
    let repairing = false;
    const contentRepair = setInterval(() => {
      if (!docs || settings.p2p === 'off' || repairing) return;
      repairing = true;
      void docs
        .repair(knownPeers(), CONTENT_REPAIR_AFTER_MS)
        .then((n) => n > 0 && log.info({ entries: n }, 'fetched document content Iroh had left missing'))
        .catch(bgError('document-content'))
        .finally(() => (repairing = false));
    }, CONTENT_REPAIR_EVERY_MS);
    contentRepair.unref();
    cleanups.push(async () => clearInterval(contentRepair));

    // Every node heartbeats into the status document: how the others know it is up.
    const heartbeat = setInterval(() => {
      if (!docs) return;
      docs.writer
        .set('node', { time: new Date().toISOString(), name: settings.name, role: membership?.role ?? settings.role, formats, capacity: { vcpus: settings.vcpus, memoryMiB: settings.memoryMiB } })
        .catch(bgError('heartbeat'));
    }, Math.min(2_000, Math.max(250, nodeTimeoutMs / 4)));
    heartbeat.unref();
    cleanups.push(async () => clearInterval(heartbeat));

    // Nothing acts on the desired state before this node has re-applied what it had committed.
    await raft.recovered();
    scheduling.start(2_000);
    cleanups.push(async () => scheduling.stop());
    await reconciler.start();
    cache.start();
    cleanups.push(() => reconciler.stop());
    await leaderDuties().catch(bgError('membership'));
    // A daemon whose data dir vanished (deleted under it) has no durable state left to stand on:
    // it says so and stops, rather than acknowledge writes into deleted files.
    const lockFile = paths.lock;
    const watchdog = setInterval(() => {
      readFile(lockFile, 'utf8').then(
        (pid) => {
          if (Number(pid.trim()) !== process.pid) lost('its lock file now belongs to another process');
        },
        () => lost('its data dir or lock file is gone'),
      );
    }, 5_000);
    watchdog.unref();
    cleanups.push(async () => clearInterval(watchdog));
    function lost(why: string): void {
      clearInterval(watchdog);
      log.fatal(`data dir ${paths.root}: ${why}; stopping`);
      opts.onFatal?.(why);
    }
    await writeRecord({ api: apiUrl, nodeId: self, name: settings.name, dataDir: paths.root, pid: process.pid, startedAt: new Date().toISOString() }, opts.env);
    cleanups.push(() => removeRecord(apiUrl, process.pid, opts.env));

    let stopped = false;
    return {
      nodeId: self,
      name: settings.name,
      apiUrl,
      token,
      settings,
      backend,
      store,
      raft,
      metrics: registry,
      formats,
      skippedDrivers: enabled.skipped,
      stop: async () => {
        if (stopped) return;
        stopped = true;
        await cleanup();
      },
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

function decodeTicketOrFail(t: string) {
  try {
    return decodeTicket(t);
  } catch (e) {
    throw new StartupError(`--join: ${(e as Error).message}`, 2);
  }
}

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new StartupError(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function splitHostPort(hp: string): [string, string] {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(hp);
  if (!m) throw new StartupError(`expected HOST:PORT, got ${JSON.stringify(hp)}`, 2);
  return [m[1] ?? m[2]!, m[3]!];
}

function registerRaftMetrics(registry: Registry, raft: RaftNode): void {
  const registers = [registry];
  new Gauge({ name: 'blixard_raft_term', help: 'Current Raft term', registers, collect() { this.set(raft.term); } });
  new Gauge({ name: 'blixard_raft_commit_index', help: 'Highest log index known committed', registers, collect() { this.set(raft.commitIndex); } });
  new Gauge({ name: 'blixard_raft_applied_index', help: 'Highest log index applied to the store', registers, collect() { this.set(raft.appliedIndex); } });
  new Gauge({ name: 'blixard_raft_is_leader', help: '1 on the leader', registers, collect() { this.set(raft.isLeader ? 1 : 0); } });
  new Gauge({ name: 'blixard_raft_wal_fsyncs', help: 'WAL fsyncs since start', registers, collect() { this.set(raft.walStats.fsyncs); } });
  new Gauge({ name: 'blixard_raft_wal_records', help: 'WAL records (one per Ready) since start', registers, collect() { this.set(raft.walStats.records); } });
  new Gauge({ name: 'blixard_raft_entries_persisted', help: 'Log entries made durable since start', registers, collect() { this.set(raft.walStats.entries); } });
}
