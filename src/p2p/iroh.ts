import { createSocket, type Socket } from 'node:dgram';
import type { Iroh, NodeOptions } from '@number0/iroh';

// The daemon's one Iroh node: persistent in the data dir (blobs, docs), with the identity Blixard
// keeps itself (iroh-ffi's persistent node does not store its secret key), bound to the addresses
// the operator chose, and with no public discovery unless asked (SPEC section 3, `--discovery`).

export interface IrohNodeOptions {
  dir: string;
  secretKey: Uint8Array;
  /** HOST:PORT for the QUIC socket; port 0 lets the OS choose. */
  listen: string;
  discovery: 'none' | 'iroh';
  /** Blixard's ALPNs (ProtocolRouter.irohProtocols()); Iroh needs them at start. */
  protocols?: NodeOptions['protocols'];
}

export async function startIroh(opts: IrohNodeOptions): Promise<Iroh> {
  const { Iroh, NodeDiscoveryConfig } = await import('@number0/iroh');
  const listen = await portFreeInBothFamilies(opts.listen);
  return Iroh.persistent(opts.dir, irohNodeOptions({ ...opts, listen }, { Default: NodeDiscoveryConfig.Default, None: NodeDiscoveryConfig.None }));
}

/**
 * --listen with port 0: a port that is free for both of Iroh's sockets, so that the node keeps
 * both addresses when it restarts on the port it saved (see bindAddresses). Best effort: Iroh
 * itself falls back to an OS-chosen port should one be taken by the time it binds.
 */
export async function portFreeInBothFamilies(listen: string, tries = 20): Promise<string> {
  const { ipv4Addr, ipv6Addr } = bindAddresses(listen);
  if (!/:0$/.test(listen)) return listen;
  const host = (a: string) => a.slice(0, a.lastIndexOf(':')).replace(/^\[|\]$/g, '');
  const v6Named = listen.startsWith('[');
  for (let i = 0; i < tries; i++) {
    const first = await bindUdp(v6Named ? 'udp6' : 'udp4', host(v6Named ? ipv6Addr : ipv4Addr), 0);
    if (!first) break;
    const port = first.address().port;
    const other = await bindUdp(v6Named ? 'udp4' : 'udp6', host(v6Named ? ipv4Addr : ipv6Addr), port);
    first.close();
    other?.close();
    if (other) return `${listen.slice(0, listen.lastIndexOf(':'))}:${port}`;
  }
  return listen;
}

async function bindUdp(type: 'udp4' | 'udp6', host: string, port: number): Promise<Socket | undefined> {
  const socket = createSocket({ type, ipv6Only: type === 'udp6' });
  return new Promise((resolve) => {
    socket.once('error', () => {
      socket.close();
      resolve(undefined);
    });
    socket.bind(port, host, () => resolve(socket));
  });
}

/** The options Iroh starts with: discovery (and with it relays) only with --discovery iroh. */
export function irohNodeOptions<D>(opts: IrohNodeOptions, discovery: { Default: D; None: D }): NodeOptions & { nodeDiscovery: D } {
  return {
    enableDocs: true,
    nodeDiscovery: opts.discovery === 'iroh' ? discovery.Default : discovery.None,
    secretKey: [...opts.secretKey],
    ...bindAddresses(opts.listen),
    ...(opts.protocols ? { protocols: opts.protocols } : {}),
  } as NodeOptions & { nodeDiscovery: D };
}

/**
 * Iroh binds one IPv4 and one IPv6 socket. The one named by --listen gets its port; the other
 * family stays on loopback, so nothing listens where it was not asked to, on the same port number.
 * A port that changed at each restart left peers sending to the old one: a peer's Iroh keeps its
 * last working path to a node for seconds, so a restarted node's first handshakes went unanswered
 * (Iroh falls back to an OS-chosen port when the number is taken).
 */
export function bindAddresses(listen: string): { ipv4Addr: string; ipv6Addr: string } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+|localhost)):(\d{1,5})$/.exec(listen);
  if (!m) throw new Error(`--listen: expected HOST:PORT (IPv6 as [addr]:port), got ${JSON.stringify(listen)}`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`--listen: expected a port from 0 to 65535, got ${port}`);
  if (m[1] !== undefined) return { ipv4Addr: `127.0.0.1:${port}`, ipv6Addr: `[${m[1]}]:${port}` };
  const host = m[2] === 'localhost' ? '127.0.0.1' : m[2]!;
  return { ipv4Addr: `${host}:${port}`, ipv6Addr: `[::1]:${port}` };
}

/** Iroh names blobs in base32 or hex; Blixard everywhere writes blake3:<hex>, as b3sum does. */
export async function toIrohHash(ref: string): Promise<string> {
  const { Hash } = await import('@number0/iroh');
  return Hash.fromString(ref.replace(/^blake3:/, '')).toString();
}

export async function fromIrohHash(h: string): Promise<string> {
  const { Hash } = await import('@number0/iroh');
  return `blake3:${Hash.fromString(h).toString('hex')}`;
}
