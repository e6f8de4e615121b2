import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { timingSafeEqual } from './lazy-crypto.js';
import type { Readable } from 'node:stream';
import type { Kind } from '../state/index.js';
import { ApiError } from './errors.js';
import { kindFromPlural } from './kinds.js';
import type {
  ApplyRequest,
  ApplyResponse,
  BlobJson,
  DeleteRequest,
  DriftJson,
  DeleteResponse,
  EventJson,
  NodeJson,
  PlanRequest,
  ResourceJson,
  StatusJson,
  TicketRequest,
  VersionJson,
  WatchEvent,
} from './types.js';
import type { Finding, Plan } from '../manifest/index.js';

// The node's HTTP API: loopback, bearer token, JSON bodies up to 8 MiB, blob uploads streamed.
// It only translates HTTP to calls on a backend the node composes; it holds no state.

export const MAX_REQUEST_BYTES = 8 * 1024 * 1024;
/** How much of a refused body is read and dropped so the client gets the answer; past it, hang up. */
const MAX_DRAIN_BYTES = 64 * 1024 * 1024;

export interface ApiBackend {
  version(): VersionJson;
  status(): Promise<StatusJson>;
  ready(): boolean;
  /** `selector`: a label selector as kubectl's -l takes it ('' selects all). */
  list(kind: Kind, local?: boolean, selector?: string): Promise<ResourceJson[]>;
  get(kind: Kind, name: string, local?: boolean): Promise<ResourceJson | undefined>;
  events(kind: Kind, name: string): EventJson[];
  nodes(): NodeJson[];
  drift(): Promise<DriftJson[]>;
  /** The schema check of documents parsed by the caller (POST /v1/validate): plain findings. */
  validate(body: unknown): Promise<{ results: Finding[][] }>;
  plan(req: PlanRequest): Promise<Plan>;
  apply(req: ApplyRequest): Promise<ApplyResponse>;
  delete(req: DeleteRequest): Promise<DeleteResponse>;
  hasBlob(hash: string): Promise<boolean>;
  putBlob(hash: string, body: Readable, size: number | null): Promise<BlobJson>;
  ticket(req: TicketRequest): Promise<{ ticket: string }>;
  cordon(node: string, req: { cordoned: boolean; drain?: boolean }): Promise<unknown>;
  /** A VM's console from the node it runs on; with `follow`, later output goes to `onData`. */
  logs(vm: string, opts: { tailBytes?: number; follow?: AbortSignal; onData?: (chunk: Buffer) => void }): Promise<Buffer>;
  /**
   * Resources of a kind as this node sees them, then their changes, until `signal` aborts.
   * Throws (before emitting anything) on a bad selector.
   */
  watch(kind: Kind, selector: string, emit: (e: WatchEvent) => void, signal: AbortSignal): Promise<void>;
}

export interface ApiServerOptions {
  token: string;
  backend: ApiBackend;
  /** Prometheus text for /metrics. */
  metrics?: () => Promise<string>;
  /** Every author's raw entries of a document under a key prefix (GET /v1/debug/documents/<doc>). */
  debugDocument?: (doc: string, prefix: string) => Promise<unknown>;
  onError?: (err: unknown, req: { method: string; url: string }) => void;
  /**
   * Resolves once the node can serve: API calls that arrive before (the socket is bound early,
   * so that a node knows its own address) wait for it rather than get a 503.
   */
  serving?: Promise<void>;
}

export function createApiServer(opts: ApiServerOptions): Server {
  const expected = Buffer.from(opts.token);
  const authorized = (req: IncomingMessage) => {
    const h = req.headers.authorization ?? '';
    const got = Buffer.from(h.startsWith('Bearer ') ? h.slice(7).trim() : '');
    return got.length === expected.length && timingSafeEqual(got, expected);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(async (err: unknown) => {
      const apiErr = err instanceof ApiError ? err : new ApiError('internal', (err as Error)?.message ?? String(err));
      if (!(err instanceof ApiError)) opts.onError?.(err, { method: req.method ?? '', url: req.url ?? '' });
      // A client still sending a body it was refused for (too large) would see its write fail
      // rather than our answer: read and drop the rest first, up to a bound, then answer.
      if (!req.complete && apiErr.code === 'too-large') await drain(req, MAX_DRAIN_BYTES);
      if (!res.headersSent && !res.destroyed) send(res, apiErr.status, apiErr.toJSON());
      else res.destroy();
      if (!req.complete) req.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const method = req.method ?? 'GET';
    const b = opts.backend;

    // Liveness and readiness are for supervisors and load balancers: no token (Kubernetes does the same).
    if (url.pathname === '/healthz') return send(res, 200, { ok: true });
    if (url.pathname === '/readyz') return b.ready() ? send(res, 200, { ready: true }) : send(res, 503, { ready: false });
    // Metrics are for a scraper on loopback, like /healthz: no token.
    if (url.pathname === '/metrics' && opts.metrics) {
      const text = await opts.metrics();
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(text) });
      return void res.end(text);
    }

    if (parts[0] !== 'v1') throw new ApiError('not-found', `no route ${method} ${url.pathname}`);
    if (opts.serving) await opts.serving;
    if (!authorized(req)) throw new ApiError('unauthorized', 'missing or wrong bearer token (see <data-dir>/token)');

    const route = `${method} /${parts.slice(1, 2).join('/')}`;
    switch (route) {
      case 'GET /debug': {
        // GET /v1/debug/documents/<cluster|status>?prefix=P: what this node's replica holds, for
        // telling a document that did not converge from a node that never wrote.
        if (parts[2] !== 'documents' || !parts[3] || !opts.debugDocument) throw new ApiError('not-found', `no route ${method} ${url.pathname}`);
        return send(res, 200, { items: await opts.debugDocument(parts[3], url.searchParams.get('prefix') ?? '') });
      }
      case 'HEAD /blobs':
      case 'GET /blobs': {
        const hash = blobHash(parts[2]);
        const has = await b.hasBlob(hash);
        if (method === 'HEAD') {
          res.writeHead(has ? 200 : 404).end();
          return;
        }
        if (!has) throw new ApiError('not-found', `blob ${hash} not found`);
        return send(res, 200, { hash, present: true });
      }
      case 'GET /logs': {
        // GET /v1/logs/<vm>?tail=LINES&follow=1: the console, streamed as it grows with follow.
        const name = parts[2];
        if (!name) throw new ApiError('invalid', 'expected /v1/logs/<vm name>');
        const tail = url.searchParams.get('tail');
        const lines = tail === null ? null : Number(tail);
        if (lines !== null && (!Number.isInteger(lines) || lines < 0)) throw new ApiError('invalid', `tail: expected a whole number of lines, got ${JSON.stringify(tail)}`);
        const follow = url.searchParams.get('follow') === '1';
        // Lines are what people count; the driver cuts bytes: ask for plenty, then trim.
        const tailBytes = lines !== null ? { tailBytes: Math.max(65536, lines * 1024) } : {};
        if (!follow) {
          let first = await b.logs(name, tailBytes);
          if (lines !== null) first = lastLines(first, lines);
          res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
          return void res.end(first);
        }
        // Follow: errors (no such VM, not here) are answered before the stream starts; then the
        // driver delivers the tail first and whatever is appended after it, until the client goes.
        await b.logs(name, { tailBytes: 0 });
        const stop = new AbortController();
        res.on('close', () => stop.abort());
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-cache' });
        res.flushHeaders();
        let first = true;
        await b
          .logs(name, {
            ...tailBytes,
            follow: stop.signal,
            onData: (c: Buffer) => {
              if (first && lines !== null) c = lastLines(c, lines);
              first = false;
              res.write(c);
            },
          })
          .catch(() => {});
        return void res.end();
      }
      case 'GET /resources': {
        // GET /v1/resources/<kind>?watch=1[&labelSelector=S]: newline-delimited WatchEvents, from
        // this node's own view (no read through the leader per change), until the client goes.
        if (parts.length !== 3 || url.searchParams.get('watch') !== '1') break;
        const kind = kindFromPlural(parts[2]);
        const stop = new AbortController();
        res.on('close', () => stop.abort());
        let started = false;
        const emit = (e: WatchEvent) => {
          if (!started) {
            res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-cache' });
            started = true;
          }
          res.write(`${JSON.stringify(e)}\n`);
        };
        try {
          await b.watch(kind, url.searchParams.get('labelSelector') ?? '', emit, stop.signal);
        } catch (e) {
          if (!started) throw e; // answered as any error: nothing was sent yet
        }
        return void res.end();
      }
      case 'PUT /blobs': {
        const hash = blobHash(parts[2]);
        const len = req.headers['content-length'];
        return send(res, 200, await b.putBlob(hash, req, len !== undefined ? Number(len) : null));
      }
    }
    const body = method === 'POST' ? await readJson<unknown>(req) : undefined;
    return send(res, 200, await dispatch(b, method, url.pathname + url.search, body));
  }

  return server;
}

/** The JSON routes of the API, apart from HTTP streaming. Throws ApiError. */
export async function dispatch(b: ApiBackend, method: string, target: string, body: unknown): Promise<unknown> {
  const url = new URL(target, 'http://localhost');
  const pathname = url.pathname;
  // ?local=1 reads this node's own replica instead of asking the leader (etcd's serializable read).
  const local = url.searchParams.get('local') === '1';
  const parts = pathname.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] !== 'v1') throw new ApiError('not-found', `no route ${method} ${pathname}`);
  switch (`${method} /${parts[1] ?? ''}`) {
    case 'GET /version':
      return b.version();
    case 'GET /status':
      return b.status();
    case 'GET /nodes':
      return { items: b.nodes() };
    case 'GET /drift':
      return { items: await b.drift() };
    case 'GET /resources': {
      const kind = kindFromPlural(parts[2]);
      // ?labelSelector=app%3Dweb: Kubernetes' name for what `blixard get -l` sends.
      if (parts.length === 3) return { items: await b.list(kind, local, url.searchParams.get('labelSelector') ?? '') };
      if (parts.length === 4) {
        const r = await b.get(kind, parts[3]!, local);
        if (!r) throw new ApiError('not-found', `${kind}/${parts[3]} not found`);
        return r;
      }
      if (parts.length === 5 && parts[4] === 'events') return { items: b.events(kind, parts[3]!) };
      break;
    }
    case 'POST /validate':
      return b.validate(body);
    case 'POST /plan':
      return b.plan(body as PlanRequest);
    case 'POST /apply':
      return b.apply(body as ApplyRequest);
    case 'POST /delete':
      return b.delete(body as DeleteRequest);
    case 'POST /tickets':
      return b.ticket(body as TicketRequest);
    case 'POST /nodes':
      // POST /v1/nodes/<name>/cordon {cordoned, drain}: no new VMs there; drain moves them away.
      if (parts.length === 4 && parts[3] === 'cordon') return b.cordon(parts[2]!, body as { cordoned: boolean; drain?: boolean });
      break;
    case 'POST /join':
      // Only over blixard/api/1, where the caller's node id is authenticated by its QUIC key.
      throw new ApiError('not-found', 'joining is done node to node (blixard node start --join TICKET)');
  }
  throw new ApiError('not-found', `no route ${method} ${pathname}`);
}

function lastLines(b: Buffer, n: number): Buffer {
  if (n === 0) return Buffer.alloc(0);
  let end = b.length;
  if (end > 0 && b[end - 1] === 10) end--;
  let seen = 0;
  for (let i = end - 1; i >= 0; i--) {
    if (b[i] === 10 && ++seen === n) return b.subarray(i + 1);
  }
  return b;
}

function blobHash(s: string | undefined): string {
  const h = s?.startsWith('blake3:') ? s : `blake3:${s ?? ''}`;
  if (!/^blake3:[0-9a-f]{64}$/.test(h)) throw new ApiError('invalid', `expected a blob hash blake3:<64 hex>, got ${JSON.stringify(s)}`);
  return h;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

// Events rather than an async iterator: the iterator's machinery costs more than a small body.
function readJson<T>(req: IncomingMessage): Promise<T> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_REQUEST_BYTES) return Promise.reject(new ApiError('too-large', `request of ${declared} bytes is over the ${MAX_REQUEST_BYTES}-byte limit`));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size <= MAX_REQUEST_BYTES) return void chunks.push(c);
      // Stop collecting; the error path drains the rest so the client reads our answer.
      req.off('data', onData);
      req.pause();
      reject(new ApiError('too-large', `request is over the ${MAX_REQUEST_BYTES}-byte limit`));
    };
    req.on('data', onData);
    req.once('error', reject);
    req.once('close', () => {
      if (!req.complete) reject(new ApiError('invalid', 'the client closed the connection before the whole request arrived'));
    });
    req.once('end', () => {
      if (size > MAX_REQUEST_BYTES) return;
      try {
        resolve(JSON.parse(chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8')) as T);
      } catch {
        reject(new ApiError('invalid', 'request body is not valid JSON'));
      }
    });
  });
}

function drain(req: IncomingMessage, max: number): Promise<void> {
  return new Promise((resolve) => {
    let seen = 0;
    req.on('data', (c: Buffer) => {
      seen += c.length;
      if (seen > max) {
        req.destroy();
        resolve();
      }
    });
    req.once('end', () => resolve());
    req.once('close', () => resolve());
    req.resume();
  });
}
