import { randomUUID } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Iroh } from '@number0/iroh';
import { createApiServer, removeRecord, writeRecord } from '../api/index.js';
import { BlobStore, ImageFiles } from '../images/index.js';
import { NodeReconciler, type LaunchedVm } from '../reconciler/index.js';
import { enabledDrivers } from '../vm/index.js';
import { startIroh } from '../p2p/index.js';
import { SingleNodeLog } from '../raft/index.js';
import { DesiredStateStore, encodeCommand, type NodeRecord } from '../state/index.js';
import { NodeBackend } from './backend.js';
import { SchedulingLoop } from './scheduling.js';
import { dataPaths, loadOrCreateIdentity, loadOrCreateToken, lockDataDir, writeFileDurable } from './datadir.js';
import { resolveSettings, saveSettings, type NodeSettings, type SettingFlags } from './settings.js';
import { decodeTicket } from './ticket.js';

// The composition root (DESIGN.md): builds a node from its data dir and flags, and starts and
// stops its parts in order. Everything here is wiring; behaviour lives in the parts.

export interface StartOptions {
  dataDir: string;
  flags: SettingFlags;
  bootstrap?: boolean;
  join?: string;
  log: Logger;
  env?: NodeJS.ProcessEnv;
}

export interface RunningNode {
  nodeId: string;
  name: string;
  apiUrl: string;
  token: string;
  settings: NodeSettings;
  backend: NodeBackend;
  store: DesiredStateStore;
  stop(): Promise<void>;
}

export class StartupError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = 'StartupError';
  }
}

export async function startNode(opts: StartOptions): Promise<RunningNode> {
  const { log } = opts;
  const paths = dataPaths(opts.dataDir);
  await mkdir(paths.root, { recursive: true, mode: 0o700 });
  const unlock = await lockDataDir(paths.root);
  const cleanups: (() => Promise<void>)[] = [unlock];
  const cleanup = async () => {
    for (const c of cleanups.reverse()) await c().catch((e: unknown) => log.warn({ err: e }, 'cleanup failed'));
  };
  try {
    const { settings, isNew, problems } = await resolveSettings(paths.root, opts.flags);
    if (problems.length > 0) throw new StartupError(problems.join('\n'), 2);
    const identity = await loadOrCreateIdentity(paths.root);
    const token = await loadOrCreateToken(paths.root);
    await saveSettings(paths.root, settings);

    const store = new DesiredStateStore();
    const stateLog = await SingleNodeLog.open(paths.state, store, { onWarning: (m) => log.warn(m) });
    cleanups.push(() => stateLog.close());
    log.info({ appliedIndex: stateLog.appliedIndex, resources: store.size, clusterId: store.clusterId }, 'desired state recovered');

    if (store.clusterId !== null) {
      if (opts.bootstrap) log.warn(`--bootstrap ignored: this data dir already belongs to cluster ${store.clusterId}`);
      if (opts.join) {
        const t = decodeTicket(opts.join);
        if (t.cluster !== store.clusterId) throw new StartupError(`--join: the ticket is for cluster ${t.cluster}, but this data dir belongs to cluster ${store.clusterId}`, 2);
        log.warn('--join ignored: this data dir is already a member of that cluster');
      }
    } else if (opts.join) {
      decodeTicket(opts.join);
      throw new StartupError('--join: joining an existing cluster needs Raft replication, which this build does not have yet; start a single node with --bootstrap', 2);
    } else if (opts.bootstrap) {
      const now = new Date().toISOString();
      await stateLog.propose(encodeCommand({ op: 'bootstrap', time: now, clusterId: randomUUID(), node: nodeRecord(identity.nodeId, settings, null, [], now) }));
      log.info({ clusterId: store.clusterId }, 'bootstrapped a new cluster');
    } else if (isNew) {
      log.warn(`waiting to be admitted: apply a Peer with nodeId ${identity.nodeId} on the cluster, or restart with --bootstrap`);
    }

    // Iroh takes a second or more to bind (it probes the network). The API opens only once
    // everything is up, so whoever gets an answer from it may rely on the whole node.
    const iroh = await startIroh({ dir: paths.iroh, secretKey: identity.secretKey, listen: settings.listen, discovery: settings.discovery });
    cleanups.push(() => iroh.node.shutdown());
    const blobs = await BlobStore.open(iroh, paths.incoming);
    const addresses = async () => (await iroh.net.nodeAddr()).addresses ?? [];

    // The hypervisor drivers this machine can run; the formats they run are what the node offers.
    const enabled = await enabledDrivers(paths.root, settings.hypervisor);
    for (const sk of enabled.skipped) {
      if (settings.hypervisor !== 'auto') throw new StartupError(`--hypervisor ${settings.hypervisor}: the ${sk.name} driver cannot run here: ${sk.why}`, 2);
      log.warn({ driver: sk.name, why: sk.why }, 'driver not available; VMs needing it will not be placed here');
    }
    const imageFiles = new ImageFiles(iroh, path.join(paths.root, 'images'));
    const ledgerFile = path.join(paths.root, 'vms', 'launched.json');

    const [apiHost, apiPortText] = splitHostPort(settings.api);
    let apiUrl = '';
    const reconciler: NodeReconciler = new NodeReconciler({
      nodeId: identity.nodeId,
      nodeName: settings.name,
      view: () => store,
      drivers: enabled.drivers,
      images: { has: (h) => blobs.has(h), pathFor: (h) => imageFiles.pathFor(h) },
      ledger: {
        load: async () => JSON.parse(await readFile(ledgerFile, 'utf8').catch(() => '{}')) as Record<string, LaunchedVm>,
        save: async (all) => {
          await mkdir(path.dirname(ledgerFile), { recursive: true });
          await writeFileDurable(ledgerFile, JSON.stringify(all, null, 1));
        },
      },
      report: () => {},
      event: (name, e) => backend.event('VirtualMachine', name, e.type, e.reason, e.message),
      log,
    });
    const backend = new NodeBackend({
      nodeId: identity.nodeId,
      settings,
      store,
      log: stateLog,
      blobs,
      addresses,
      apiUrl: () => apiUrl,
      vms: reconciler,
      onCommitted: () => {
        scheduling.kick();
        reconciler.kick();
      },
    });
    // Until node liveness lands, the only node known to be up is this one.
    const scheduling = new SchedulingLoop(store, { schedulable: (id) => id === identity.nodeId }, (cmd) => backend.propose(cmd), () => backend.isLeader, log);
    const server = createApiServer({ token, backend, onError: (err, req) => log.error({ err, ...req }, 'API request failed') });
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

    if (backend.isLeader) {
      // Keep this node's record current: its API and Iroh addresses change between runs.
      const now = new Date().toISOString();
      const prev = store.node(identity.nodeId);
      const rec = nodeRecord(identity.nodeId, settings, apiUrl, await addresses(), prev?.registeredAt ?? now, reconciler.formats);
      if (!prev || JSON.stringify({ ...prev, updatedAt: '' }) !== JSON.stringify({ ...rec, updatedAt: '' })) {
        await backend.propose({ op: 'registerNode', time: now, node: rec });
      }
    }
    scheduling.start(2_000);
    cleanups.push(async () => scheduling.stop());
    await reconciler.start();
    cleanups.push(() => reconciler.stop());
    await writeRecord({ api: apiUrl, nodeId: identity.nodeId, name: settings.name, dataDir: paths.root, pid: process.pid, startedAt: new Date().toISOString() }, opts.env);
    cleanups.push(() => removeRecord(apiUrl, process.pid, opts.env));

    let stopped = false;
    return {
      nodeId: identity.nodeId,
      name: settings.name,
      apiUrl,
      token,
      settings,
      backend,
      store,
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

function nodeRecord(nodeId: string, s: NodeSettings, api: string | null, addresses: string[], registeredAt: string, formats: string[] = []): NodeRecord {
  return {
    nodeId,
    name: s.name,
    role: s.role,
    api,
    addresses,
    labels: s.labels,
    capacity: { vcpus: s.vcpus, memoryMiB: s.memoryMiB },
    formats,
    registeredAt,
    updatedAt: new Date().toISOString(),
  };
}

function splitHostPort(hp: string): [string, string] {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(hp);
  if (!m) throw new StartupError(`expected HOST:PORT, got ${JSON.stringify(hp)}`, 2);
  return [m[1] ?? m[2]!, m[3]!];
}
