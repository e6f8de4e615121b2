import { execFile } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

// A network of namespaces for tests that cut nodes off for real: one namespace per node, joined
// by a bridge in a hub namespace, and one veth from the test's own namespace into the hub so that
// its clients reach every node's API. Two kinds of fault:
//   - nftables rules inside a node's namespace that match only node-to-node traffic (the peers'
//     addresses): clients keep reaching every node, as clients of a real cluster do when one of
//     its links breaks (cut, isolate, loss);
//   - a node's cable pulled (its port on the bridge down): nothing reaches it (unplug).
// Needs root, or passwordless sudo, with iproute2 and nftables.
//
// Addresses come from 198.51.100.0/24 (TEST-NET-2, never routed anywhere), one /28 per lab, so
// that test files running side by side each get their own. A lab's slot is claimed by creating
// its host-side link (the kernel refuses a second one of that name); a slot whose owner died is
// cleaned up and taken.

const run = promisify(execFile);
const SLOTS = 16;

export interface NetLab {
  /** The namespace node i runs in. */
  ns(i: number): string;
  /** A command prefix that runs a program in node i's namespace (for spawn). */
  exec(i: number): string[];
  /** Node i's address (its API listens there; peers reach it there). */
  ip(i: number): string;
  /** Drops node-to-node traffic: `from` no longer hears `to`'s packets, and (both) vice versa. */
  cut(a: number, b: number, direction?: 'both' | 'a-hears-nothing-from-b'): Promise<void>;
  /** Cuts node i off from every other node (clients still reach it). */
  isolate(i: number): Promise<void>;
  /** Drops `percent` % of the packets node i receives from the other nodes, at random. */
  loss(i: number, percent: number): Promise<void>;
  /** Removes every nftables fault. */
  heal(): Promise<void>;
  /** Pulls node i's cable: nothing reaches it, clients included. */
  unplug(i: number): Promise<void>;
  plug(i: number): Promise<void>;
  /** The rules in force, per node (for a failed run's record). */
  rules(): Promise<string[]>;
  teardown(): Promise<void>;
}

const asRoot = process.getuid?.() === 0;

async function sh(command: string, commandArgs: string[], input?: string): Promise<string> {
  const [cmd, args] = asRoot || command === 'which' ? [command, commandArgs] : ['sudo', ['-n', command, ...commandArgs]];
  try {
    if (input === undefined) return (await run(cmd, args)).stdout;
    return await new Promise<string>((resolve, reject) => {
      const child = execFile(cmd, args, (err, stdout, stderr) => (err ? reject(Object.assign(err, { stderr })) : resolve(stdout)));
      child.stdin!.end(input);
    });
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${err.stderr?.trim() || err.message}`);
  }
}

const lockFile = (slot: number) => path.join(os.tmpdir(), `blixard-netlab-${slot}.pid`);
const hostLink = (slot: number) => `bxlab${slot}h`;
const nsName = (slot: number, what: string) => `bxlab${slot}-${what}`;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function removeSlot(slot: number): Promise<void> {
  await sh('ip', ['link', 'del', hostLink(slot)]).catch(() => {});
  const list = await sh('ip', ['netns', 'list']).catch(() => '');
  for (const line of list.split('\n')) {
    const name = line.split(' ')[0];
    if (name?.startsWith(`bxlab${slot}-`)) await sh('ip', ['netns', 'del', name]).catch(() => {});
  }
  await rm(lockFile(slot), { force: true });
}

/** Claims a free slot (cleaning one whose owner died) and returns it. */
async function claimSlot(): Promise<number> {
  for (let slot = 0; slot < SLOTS; slot++) {
    const owner = Number(await readFile(lockFile(slot), 'utf8').catch(() => ''));
    if (owner && owner !== process.pid && !alive(owner)) await removeSlot(slot);
    try {
      await sh('ip', ['link', 'add', hostLink(slot), 'type', 'veth', 'peer', 'name', `bxlab${slot}p`]);
    } catch {
      continue; // taken
    }
    await writeFile(lockFile(slot), String(process.pid));
    return slot;
  }
  throw new Error(`no free network lab slot of ${SLOTS} (see ip link | grep bxlab)`);
}

export async function createNetLab(size: number): Promise<NetLab> {
  if (size > 12) throw new Error('a lab holds at most 12 nodes');
  for (const tool of ['ip', 'nft']) await sh('which', [tool]).catch(() => Promise.reject(new Error(`network namespace tests need \`${tool}\` (apt-get install iproute2 nftables)`)));
  const slot = await claimSlot();
  const base = 16 * slot;
  const hub = nsName(slot, 'hub');
  const ns = (i: number) => nsName(slot, `n${i + 1}`);
  const ip = (i: number) => `198.51.100.${base + 2 + i}`;
  const hostIp = `198.51.100.${base + 1}`;
  const nodes = Array.from({ length: size }, (_, i) => i);
  const nft = (i: number, script: string) => sh('ip', ['netns', 'exec', ns(i), 'nft', '-f', '-'], script);
  try {
    await sh('ip', ['netns', 'add', hub]);
    await sh('ip', ['-n', hub, 'link', 'add', 'br0', 'type', 'bridge']);
    await sh('ip', ['-n', hub, 'link', 'set', 'br0', 'up']);
    await sh('ip', ['link', 'set', `bxlab${slot}p`, 'netns', hub]);
    await sh('ip', ['-n', hub, 'link', 'set', `bxlab${slot}p`, 'master', 'br0', 'up']);
    await sh('ip', ['addr', 'add', `${hostIp}/28`, 'dev', hostLink(slot)]);
    await sh('ip', ['link', 'set', hostLink(slot), 'up']);
    for (const i of nodes) {
      await sh('ip', ['netns', 'add', ns(i)]);
      await sh('ip', ['-n', hub, 'link', 'add', `v${i + 1}`, 'type', 'veth', 'peer', 'name', 'e0', 'netns', ns(i)]);
      await sh('ip', ['-n', hub, 'link', 'set', `v${i + 1}`, 'master', 'br0', 'up']);
      // IPv4 only between nodes: a link-local IPv6 address would carry Iroh's packets past
      // rules written for the nodes' addresses.
      await sh('ip', ['netns', 'exec', ns(i), 'sysctl', '-qw', 'net.ipv6.conf.e0.disable_ipv6=1']);
      await sh('ip', ['-n', ns(i), 'addr', 'add', `${ip(i)}/28`, 'dev', 'e0']);
      await sh('ip', ['-n', ns(i), 'link', 'set', 'e0', 'up']);
      await sh('ip', ['-n', ns(i), 'link', 'set', 'lo', 'up']);
      await nft(i, 'table inet fault {\n chain in { type filter hook input priority 0; }\n chain out { type filter hook output priority 0; }\n}\n');
    }
  } catch (e) {
    await removeSlot(slot);
    throw e;
  }
  const others = (i: number) => nodes.filter((j) => j !== i);
  return {
    ns,
    exec: (i) => [...(asRoot ? [] : ['sudo', '-n']), 'ip', 'netns', 'exec', ns(i)],
    ip,
    async cut(a, b, direction = 'both') {
      await nft(a, `add rule inet fault in ip saddr ${ip(b)} drop\n`);
      if (direction === 'both') await nft(a, `add rule inet fault out ip daddr ${ip(b)} drop\n`);
    },
    async isolate(i) {
      for (const j of others(i)) await nft(i, `add rule inet fault in ip saddr ${ip(j)} drop\nadd rule inet fault out ip daddr ${ip(j)} drop\n`);
    },
    async loss(i, percent) {
      const peers = others(i).map(ip).join(', ');
      await nft(i, `add rule inet fault in ip saddr { ${peers} } numgen random mod 100 < ${Math.round(percent)} drop\n`);
    },
    async heal() {
      for (const i of nodes) await nft(i, 'flush chain inet fault in\nflush chain inet fault out\n');
    },
    async unplug(i) {
      await sh('ip', ['-n', hub, 'link', 'set', `v${i + 1}`, 'down']);
    },
    async plug(i) {
      await sh('ip', ['-n', hub, 'link', 'set', `v${i + 1}`, 'up']);
    },
    async rules() {
      return Promise.all(nodes.map(async (i) => `${ns(i)}:\n${await sh('ip', ['netns', 'exec', ns(i), 'nft', 'list', 'table', 'inet', 'fault']).catch((e: Error) => e.message)}`));
    },
    async teardown() {
      await removeSlot(slot);
    },
  };
}
