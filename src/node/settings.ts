import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { parseBytes, parseDuration, parseRate, type Labels } from '../state/index.js';
import { writeFileAtomic } from '../storage/index.js';
import { dataPaths } from './datadir.js';

// A node's settings live in its data dir, so `node start --data-dir D` alone restarts it as it was
// (SPEC section 4). Flags given on a later start override the stored value and are stored.

export interface NodeSettings {
  version: 1;
  name: string;
  api: string; // HOST:PORT
  listen: string; // HOST:PORT for Iroh's QUIC socket; port 0 = OS chooses
  role: 'voter' | 'worker';
  hypervisor: string;
  labels: Labels;
  vcpus: number;
  memoryMiB: number;
  prefetch: 'assigned' | 'all';
  maxTransferRate: string | null;
  imageCacheSize: string | null;
  nodeTimeout: string;
  fenceAfter: string;
  discovery: 'none' | 'iroh';
  /** off: a node on its own. It admits nobody on any Blixard protocol, gives out no tickets and
   * joins nothing; Iroh still holds its blobs and documents, locally. */
  p2p: 'on' | 'off';
}

export type SettingFlags = Partial<Omit<NodeSettings, 'version'>>;

export function defaultSettings(): NodeSettings {
  return {
    version: 1,
    name: os.hostname().toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 63) || 'node',
    api: '127.0.0.1:7400',
    listen: '127.0.0.1:0',
    role: 'voter',
    hypervisor: 'auto',
    labels: {},
    vcpus: os.cpus().length,
    memoryMiB: Math.floor(os.totalmem() / (1024 * 1024)),
    prefetch: 'assigned',
    maxTransferRate: null,
    imageCacheSize: null,
    nodeTimeout: '10s',
    fenceAfter: '20s',
    discovery: 'none',
    p2p: 'on',
  };
}

/** Checks settings the way flags are checked: a clear message naming the flag. */
export function checkSettings(s: NodeSettings): string[] {
  const problems: string[] = [];
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(s.name) || s.name.length > 63) problems.push(`--name: expected a DNS-1123 label, got ${JSON.stringify(s.name)}`);
  if (!/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(s.api)) problems.push(`--api: expected HOST:PORT, got ${JSON.stringify(s.api)}`);
  if (!/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(s.listen)) problems.push(`--listen: expected HOST:PORT, got ${JSON.stringify(s.listen)}`);
  if (!['voter', 'worker'].includes(s.role)) problems.push(`--role: expected voter or worker, got ${JSON.stringify(s.role)}`);
  const drivers = s.hypervisor === 'auto' ? [] : s.hypervisor.split(',');
  for (const d of drivers) if (!['qemu', 'process'].includes(d)) problems.push(`--hypervisor: expected auto, qemu, process or qemu,process, got ${JSON.stringify(s.hypervisor)}`);
  if (!Number.isInteger(s.vcpus) || s.vcpus < 1) problems.push(`--vcpus: expected a positive integer, got ${s.vcpus}`);
  if (!Number.isInteger(s.memoryMiB) || s.memoryMiB < 1) problems.push(`--memory-mib: expected a positive integer, got ${s.memoryMiB}`);
  if (!['assigned', 'all'].includes(s.prefetch)) problems.push(`--prefetch: expected assigned or all, got ${JSON.stringify(s.prefetch)}`);
  if (!['none', 'iroh'].includes(s.discovery)) problems.push(`--discovery: expected none or iroh, got ${JSON.stringify(s.discovery)}`);
  if (!['on', 'off'].includes(s.p2p)) problems.push(`--p2p: expected on or off, got ${JSON.stringify(s.p2p)}`);
  if (s.p2p === 'off' && s.role === 'worker') problems.push('--p2p off: a worker lives on the cluster documents it syncs; run it with P2P on');
  if (s.p2p === 'off' && s.discovery === 'iroh') problems.push('--discovery iroh: discovery needs P2P on');
  const tryParse = (flag: string, v: string | null, fn: (x: string) => number) => {
    if (v === null) return;
    try {
      fn(v);
    } catch (e) {
      problems.push(`${flag}: ${(e as Error).message}`);
    }
  };
  tryParse('--max-transfer-rate', s.maxTransferRate, parseRate);
  tryParse('--image-cache-size', s.imageCacheSize, parseBytes);
  tryParse('--node-timeout', s.nodeTimeout, parseDuration);
  tryParse('--fence-after', s.fenceAfter, parseDuration);
  return problems;
}

export async function readSettings(dir: string): Promise<NodeSettings | undefined> {
  try {
    return { ...defaultSettings(), ...(JSON.parse(await readFile(dataPaths(dir).settings, 'utf8')) as Partial<NodeSettings>) };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`${dataPaths(dir).settings}: ${(e as Error).message}`);
  }
}

/** Stored settings overridden by the flags given this time; `isNew` when the dir had none. */
export async function resolveSettings(dir: string, flags: SettingFlags): Promise<{ settings: NodeSettings; isNew: boolean; problems: string[] }> {
  const stored = await readSettings(dir);
  const defined = Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined)) as SettingFlags;
  const settings: NodeSettings = { ...(stored ?? defaultSettings()), ...defined, version: 1 };
  return { settings, isNew: stored === undefined, problems: checkSettings(settings) };
}

export async function saveSettings(dir: string, s: NodeSettings): Promise<void> {
  await writeFileAtomic(dataPaths(dir).settings, JSON.stringify(s, null, 2) + '\n', { mode: 0o600, sync: 'all' });
}

/** The QUIC port the OS chose on first start is kept, so that peers find the node where it was. */
export async function keepBoundPort(dir: string, s: NodeSettings, bound: string[]): Promise<void> {
  if (!/:0$/.test(s.listen)) return;
  const host = s.listen.slice(0, s.listen.lastIndexOf(':'));
  const addr = bound.find((a) => a.startsWith(`${host}:`) || a.startsWith(`[${host.replace(/^\[|\]$/g, '')}]:`));
  if (!addr) return;
  s.listen = addr;
  await saveSettings(dir, s);
}
