import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import type { Iroh } from '@number0/iroh';
import { ProtocolRouter, bindAddresses, type Alpn } from '../../src/p2p/index.js';

// In-process Iroh nodes on loopback for p2p tests: real QUIC, no discovery, no internet.

process.env.IROH_FORCE_STAGING_RELAYS = '1'; // ~1 s start instead of ~3 s when offline (tests only)

export interface TestNode {
  iroh: Iroh;
  nodeId: string;
  addresses: string[];
  router: ProtocolRouter;
  secretKey: Buffer;
  port: number;
  allow: Set<string>;
  refused: { alpn: Alpn; remote: string }[];
}

export async function freeUdpPort(): Promise<number> {
  // A TCP probe is a good enough hint for a free UDP port on loopback in tests.
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export async function startTestNode(opts: { secretKey?: Buffer; port?: number; allow?: Iterable<string>; docs?: boolean } = {}): Promise<TestNode> {
  const { Iroh, NodeDiscoveryConfig } = await import('@number0/iroh');
  const secretKey = opts.secretKey ?? randomBytes(32);
  const port = opts.port ?? (await freeUdpPort());
  const allow = new Set(opts.allow ?? []);
  const refused: TestNode['refused'] = [];
  const router = new ProtocolRouter((id) => allow.has(id), { refused: (alpn, remote) => refused.push({ alpn, remote }) });
  const iroh = await Iroh.memory({
    enableDocs: opts.docs ?? true,
    nodeDiscovery: NodeDiscoveryConfig.None,
    secretKey: [...secretKey],
    ...bindAddresses(`127.0.0.1:${port}`),
    protocols: router.irohProtocols(),
  });
  const addr = await iroh.net.nodeAddr();
  return { iroh, nodeId: addr.nodeId, addresses: addr.addresses ?? [], router, secretKey, port, allow, refused };
}

export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
