import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { StartupError } from './startup-error.js';

// The node's HTTP API on its --api address (port 0: the OS chooses): listening, and closed on stop.

export async function listen(server: Server, api: string): Promise<string> {
  const [host, port] = splitHostPort(api);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(e.code === 'EADDRINUSE' ? new StartupError(`--api ${api} is in use (another node? choose another with --api HOST:PORT)`) : e));
    server.listen(Number(port), host, () => resolve());
  });
  return `http://${host.includes(':') ? `[${host}]` : host}:${(server.address() as AddressInfo).port}`;
}

export function close(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

function splitHostPort(hp: string): [string, string] {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(hp);
  if (!m) throw new StartupError(`expected HOST:PORT, got ${JSON.stringify(hp)}`, 'invalid');
  return [m[1] ?? m[2]!, m[3]!];
}
