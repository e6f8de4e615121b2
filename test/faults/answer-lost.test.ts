import { createServer, request, type Server } from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient, type ApplyRequest } from '../../src/api/index.js';
import { removeDir, startDaemon, tempDir, type Daemon } from '../helpers/daemon.js';

// A write whose answer is lost on the way back: the client sends it again with the same request
// id, and the cluster answers the first attempt's outcome instead of applying it twice.

let work: string;
let d: Daemon;
let proxy: Server;
let proxyUrl: string;
const seen: { path: string; status: number; dropped: boolean }[] = [];

beforeAll(async () => {
  work = await tempDir();
  d = await startDaemon({ dataDir: path.join(work, 'n1'), configHome: path.join(work, 'config'), args: ['--bootstrap', '--hypervisor', 'process'] });
  // Passes every call on to the node; the first apply's answer is read, then thrown away with its
  // connection (as a network cut at that moment would).
  const target = new URL(d.api);
  let dropNext = true;
  proxy = createServer((req, res) => {
    const upstream = request({ hostname: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (up) => {
      const chunks: Buffer[] = [];
      up.on('data', (c: Buffer) => chunks.push(c));
      up.on('end', () => {
        const drop = dropNext && req.url === '/v1/apply';
        seen.push({ path: req.url ?? '', status: up.statusCode ?? 0, dropped: drop });
        if (drop) {
          dropNext = false;
          req.socket.destroy();
          return;
        }
        res.writeHead(up.statusCode ?? 500, up.headers);
        res.end(Buffer.concat(chunks));
      });
    });
    req.pipe(upstream);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
});

afterAll(async () => {
  proxy?.close();
  await d?.stop();
  await removeDir(work);
});

describe('a write whose answer is lost', () => {
  it('is sent again with its request id and applied once; the retry gets the first answer', async () => {
    const api = new ApiClient({ server: proxyUrl, token: d.token, retryMs: 10_000 });
    const req: ApplyRequest = {
      desired: [{ kind: 'Image', name: 'once', labels: { v: '1' }, spec: { blob: `blake3:${'a'.repeat(64)}`, format: 'raw' }, source: { hash: `blake3:${'a'.repeat(64)}`, size: null } }],
      applyset: 'lost',
      prune: false,
      maxPrune: 0,
      dryRun: false,
    };
    const res = await api.apply(req);
    api.close();
    // The node answered twice: the first answer was dropped, the retry was answered.
    expect(seen.filter((s) => s.path === '/v1/apply').map((s) => [s.status, s.dropped])).toEqual([
      [200, true],
      [200, false],
    ]);
    // The first attempt's outcome ("created"), not that of a second apply ("unchanged").
    expect(res.results).toEqual([{ kind: 'Image', name: 'once', action: 'created' }]);
    const stored = await d.client.get('Image', 'once');
    expect(stored.metadata).toMatchObject({ generation: 1, resourceVersion: res.index });
    // Without the id, the same body sent again is a second write (the control for the above).
    const plain = await d.client.json<{ results: unknown[] }>('POST', '/v1/apply', req);
    expect(plain.results).toEqual([{ kind: 'Image', name: 'once', action: 'unchanged' }]);
  });
});
