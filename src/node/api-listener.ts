import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { StartupError } from './startup-error.js';

// The node's HTTP API on its --api address (port 0: the OS chooses). Its URL is known once it
// listens; parts built before then (the service names it in status and tickets) read it later.
// It listens before the node has finished starting (a new cluster's first entry names the API's
// address), but API calls wait until `open()`: a starting node answers nothing it cannot serve.

export class ApiListener {
  private server: Server | undefined;
  private address = '';
  private opened: () => void = () => {};
  /** Resolves at `open()`: what the API server waits on before it handles a call. */
  readonly serving = new Promise<void>((r) => (this.opened = r));

  constructor(private readonly api: string) {}

  /** The node can serve: calls that waited are handled now. */
  open(): void {
    this.opened();
  }

  get url(): string {
    return this.address;
  }

  async listen(server: Server): Promise<string> {
    const [host, port] = splitHostPort(this.api);
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(e.code === 'EADDRINUSE' ? new StartupError(`--api ${this.api} is in use (another node? choose another with --api HOST:PORT)`) : e));
      server.listen(Number(port), host, () => resolve());
    });
    this.server = server;
    this.address = `http://${host.includes(':') ? `[${host}]` : host}:${(server.address() as AddressInfo).port}`;
    return this.address;
  }

  close(): Promise<void> {
    return new Promise<void>((resolve) => {
      if (!this.server) return resolve();
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

function splitHostPort(hp: string): [string, string] {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(hp);
  if (!m) throw new StartupError(`expected HOST:PORT, got ${JSON.stringify(hp)}`, 'invalid');
  return [m[1] ?? m[2]!, m[3]!];
}
