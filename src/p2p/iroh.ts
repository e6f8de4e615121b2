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
  return Iroh.persistent(opts.dir, irohNodeOptions(opts, { Default: NodeDiscoveryConfig.Default, None: NodeDiscoveryConfig.None }));
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
 * family stays on loopback with an OS-chosen port, so nothing listens where it was not asked to.
 */
export function bindAddresses(listen: string): { ipv4Addr: string; ipv6Addr: string } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+|localhost)):(\d{1,5})$/.exec(listen);
  if (!m) throw new Error(`--listen: expected HOST:PORT (IPv6 as [addr]:port), got ${JSON.stringify(listen)}`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`--listen: expected a port from 0 to 65535, got ${port}`);
  if (m[1] !== undefined) return { ipv4Addr: '127.0.0.1:0', ipv6Addr: `[${m[1]}]:${port}` };
  const host = m[2] === 'localhost' ? '127.0.0.1' : m[2]!;
  return { ipv4Addr: `${host}:${port}`, ipv6Addr: '[::1]:0' };
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
