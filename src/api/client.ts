import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Agent, request, type IncomingMessage } from 'node:http';
import type { Finding, Plan, SchemaDoc } from '../manifest/index.js';
import type { Kind } from '../state/index.js';
import { ApiError, codeForStatus, type ErrorCode } from './errors.js';
import { kindPlural } from './kinds.js';
import type {
  ApplyRequest,
  ApplyResponse,
  BlobJson,
  CordonRequest,
  DeleteRequest,
  DeleteResponse,
  DriftJson,
  EventJson,
  NodeJson,
  PlanRequest,
  ResourceJson,
  StatusJson,
  TicketRequest,
  VersionJson,
  WatchEvent,
} from './types.js';

// A typed client for the node API, used by the CLI and, in-process, by tests and benchmarks.

export interface ClientOptions {
  server: string; // http://127.0.0.1:7400
  token?: string;
  timeoutMs?: number;
  /**
   * How long to keep retrying a call the cluster could not take now: a `no-leader` answer, or a
   * connection lost mid-call for a read or a write with a request id (SPEC section 12). 0: never.
   */
  retryMs?: number;
}

/** First wait between retries; it doubles up to RETRY_MAX_MS. */
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 2_000;

export class ApiClient {
  readonly server: string;
  private readonly token: string | undefined;
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 64 });
  private readonly timeoutMs: number;
  private readonly retryMs: number;
  // Parsed once: building a URL per request is a measurable share of a small request's cost.
  private readonly target: { protocol: string; hostname: string; port: string; base: string };

  constructor(opts: ClientOptions) {
    this.server = opts.server.replace(/\/+$/, '');
    this.token = opts.token;
    this.timeoutMs = opts.timeoutMs ?? 120_000;
    this.retryMs = opts.retryMs ?? 0;
    const u = new URL(this.server);
    this.target = { protocol: u.protocol, hostname: u.hostname.replace(/^\[(.*)\]$/, '$1'), port: u.port, base: u.pathname.replace(/\/+$/, '') };
  }

  close(): void {
    this.agent.destroy();
  }

  /** The node's schema check of parsed documents (the CLI need not load zod for it). */
  async validate(documents: SchemaDoc[]): Promise<Finding[][]> {
    return (await this.json<{ results: Finding[][] }>('POST', '/v1/validate', { documents })).results;
  }
  version(): Promise<VersionJson> {
    return this.json('GET', '/v1/version');
  }
  status(): Promise<StatusJson> {
    return this.json('GET', '/v1/status');
  }
  /**
   * With `local`, this node's own replica answers (possibly behind the leader); with `selector`
   * (kubectl's -l syntax), only the resources whose labels match it.
   */
  async list(kind: Kind, opts: { local?: boolean; selector?: string } = {}): Promise<ResourceJson[]> {
    const q = new URLSearchParams();
    if (opts.local) q.set('local', '1');
    if (opts.selector) q.set('labelSelector', opts.selector);
    const query = q.size > 0 ? `?${q.toString()}` : '';
    return (await this.json<{ items: ResourceJson[] }>('GET', `/v1/resources/${kindPlural(kind)}${query}`)).items;
  }
  /**
   * The resources of a kind as the server's node sees them, then each change, to `onEvent`
   * (WatchEvent), until `signal` aborts or the server goes. Bad input is thrown before any event.
   */
  async watch(kind: Kind, opts: { selector?: string; signal: AbortSignal }, onEvent: (e: WatchEvent) => void): Promise<void> {
    const q = new URLSearchParams({ watch: '1' });
    if (opts.selector) q.set('labelSelector', opts.selector);
    const res = await this.send('GET', `/v1/resources/${kindPlural(kind)}?${q}`, undefined, {}, 0);
    if ((res.statusCode ?? 500) >= 400) throw await errorFrom(res);
    if (opts.signal.aborted) return void res.destroy();
    opts.signal.addEventListener('abort', () => res.destroy(), { once: true });
    let partial = '';
    await new Promise<void>((resolve, reject) => {
      res.on('data', (c: Buffer) => {
        const lines = (partial + c.toString('utf8')).split('\n');
        partial = lines.pop()!;
        for (const line of lines) if (line) onEvent(JSON.parse(line) as WatchEvent);
      });
      res.once('end', resolve);
      res.once('close', resolve); // destroyed by the abort
      res.once('error', (e) => (opts.signal.aborted ? resolve() : reject(e)));
    });
  }
  get(kind: Kind, name: string): Promise<ResourceJson> {
    return this.json('GET', `/v1/resources/${kindPlural(kind)}/${encodeURIComponent(name)}`);
  }
  async events(kind: Kind, name: string): Promise<EventJson[]> {
    return (await this.json<{ items: EventJson[] }>('GET', `/v1/resources/${kindPlural(kind)}/${encodeURIComponent(name)}/events`)).items;
  }
  async drift(): Promise<DriftJson[]> {
    return (await this.json<{ items: DriftJson[] }>('GET', '/v1/drift')).items;
  }
  async nodes(): Promise<NodeJson[]> {
    return (await this.json<{ items: NodeJson[] }>('GET', '/v1/nodes')).items;
  }
  plan(req: PlanRequest): Promise<Plan> {
    return this.json('POST', '/v1/plan', req);
  }
  /** Writes carry a request id (kept across retries): the cluster applies each at most once. */
  apply(req: ApplyRequest): Promise<ApplyResponse> {
    return this.json('POST', '/v1/apply', withRequestId(req));
  }
  delete(req: DeleteRequest): Promise<DeleteResponse> {
    return this.json('POST', '/v1/delete', withRequestId(req));
  }
  ticket(req: TicketRequest): Promise<{ ticket: string }> {
    return this.json('POST', '/v1/tickets', req);
  }
  /** A VM's console; with `follow`, chunks keep coming until the signal aborts or the server ends. */
  async logs(vm: string, opts: { tailLines?: number; follow?: boolean; onData: (chunk: Buffer) => void; signal?: AbortSignal }): Promise<void> {
    const q = new URLSearchParams();
    if (opts.tailLines !== undefined) q.set('tail', String(opts.tailLines));
    if (opts.follow) q.set('follow', '1');
    const res = await this.send('GET', `/v1/logs/${encodeURIComponent(vm)}?${q}`, undefined, {}, opts.follow ? 0 : this.timeoutMs);
    if ((res.statusCode ?? 500) >= 400) throw await errorFrom(res);
    opts.signal?.addEventListener('abort', () => res.destroy(), { once: true });
    try {
      for await (const c of res) opts.onData(c as Buffer);
    } catch (e) {
      if (!opts.signal?.aborted) throw e;
    }
  }

  cordon(node: string, req: CordonRequest): Promise<{ nodeId: string; evicting: number }> {
    return this.json('POST', `/v1/nodes/${encodeURIComponent(node)}/cordon`, withRequestId(req));
  }

  async hasBlob(hash: string): Promise<boolean> {
    const res = await this.send('HEAD', `/v1/blobs/${hash}`);
    res.resume();
    if (res.statusCode === 200) return true;
    if (res.statusCode === 404) return false;
    throw await errorFrom(res);
  }

  /** Streams a file to the node's blob store; the node verifies it against `hash`. */
  async putBlob(hash: string, file: string, onProgress?: (sent: number, total: number) => void): Promise<BlobJson> {
    const { size } = await stat(file);
    const body = createReadStream(file, { highWaterMark: 1 << 20 });
    let sent = 0;
    body.on('data', (c) => {
      sent += (c as Buffer).length;
      onProgress?.(sent, size);
    });
    const res = await this.send('PUT', `/v1/blobs/${hash}`, body, { 'content-type': 'application/octet-stream', 'content-length': String(size) }, 0);
    return readResult<BlobJson>(res);
  }

  async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    let end = Infinity;
    const once = async () => {
      const headers: Record<string, string> = payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {};
      // The whole call, retries included, ends by the deadline: the last attempt gets what is left.
      const timeoutMs = Math.max(1, Math.min(this.timeoutMs > 0 ? this.timeoutMs : Infinity, end - Date.now()));
      return readResult<T>(await this.send(method, path, payload, headers, Number.isFinite(timeoutMs) ? timeoutMs : 0));
    };
    if (this.retryMs <= 0) return once();
    // A read, or a write with its id, may be sent again after its connection broke mid-call.
    const repeatable = method === 'GET' || typeof (body as { requestId?: unknown } | undefined)?.requestId === 'string';
    end = Date.now() + this.retryMs;
    // A write whose attempt may have reached the cluster: however a later attempt fails, the
    // caller must not be told it was not applied (its node may have died with the answer).
    let reached = false;
    for (let wait = RETRY_FIRST_MS; ; wait = Math.min(wait * 2, RETRY_MAX_MS)) {
      try {
        return await once();
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        if (!retryable(e, repeatable) || Date.now() + wait > end) throw reached && (!mayHaveReached(e) || notApplied(e)) ? outcomeUnknown(e) : e;
        reached ||= method !== 'GET' && !notApplied(e);
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  private send(
    method: string,
    path: string,
    body?: Buffer | NodeJS.ReadableStream,
    headers: Record<string, string> = {},
    timeoutMs = this.timeoutMs,
  ): Promise<IncomingMessage> {
    const { protocol, hostname, port, base } = this.target;
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    return new Promise((resolve, reject) => {
      const req = request({ protocol, hostname, port, path: base + path, method, agent: this.agent, headers }, resolve);
      if (timeoutMs > 0) {
        req.setTimeout(timeoutMs, () => req.destroy(new ApiError('unreachable', `no answer from ${this.server} within ${timeoutMs / 1000}s`)));
      }
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err instanceof ApiError) return reject(err);
        // The server closed an idle keep-alive socket just as we reused it: the request never
        // reached it, so sending it again is safe (Node's documented reusedSocket pattern). Or
        // the server died with the request: then the new connection is refused, and the call
        // fails as the reset it met, which may have come after the server took it.
        if (req.reusedSocket && err.code === 'ECONNRESET' && !(body && !Buffer.isBuffer(body))) {
          return void this.send(method, path, body, headers, timeoutMs).then(resolve, (again: unknown) => reject(connectionOf(again) === 'ECONNREFUSED' ? unreachable(this.server, err) : again));
        }
        // A server that rejects an upload early closes the socket while we still write: prefer its answer.
        reject(unreachable(this.server, err));
      });
      if (body === undefined) req.end();
      else if (Buffer.isBuffer(body)) req.end(body);
      else body.pipe(req);
    });
  }
}

function unreachable(server: string, err: NodeJS.ErrnoException): ApiError {
  return new ApiError('unreachable', `cannot reach the Blixard API at ${server}: ${err.code ?? err.message} (is a node running? \`blixard node start\` or \`blixard up\`)`, { connection: err.code ?? 'lost' });
}

/** A request id for a write that has none yet (Web Crypto's: no node:crypto import at start). */
function withRequestId<R extends { requestId?: string }>(req: R): R {
  return req.requestId ? req : { ...req, requestId: globalThis.crypto.randomUUID() };
}

/**
 * Worth asking again: the cluster had no leader to take it, or the connection broke after the
 * call was sent (for a call that may be repeated). A server that is not there at all
 * (ECONNREFUSED) is not waited for: that is a wrong address or a stopped node, said at once.
 */
function retryable(e: ApiError, repeatable: boolean): boolean {
  if (e.code === 'no-leader') return true;
  const connection = connectionOf(e);
  return e.code === 'unreachable' && repeatable && connection !== undefined && connection !== 'ECONNREFUSED';
}

/** An error after which the call may have been taken (so a write may have been applied). */
function mayHaveReached(e: ApiError): boolean {
  return connectionOf(e) !== 'ECONNREFUSED';
}

/** The node answered that the call was applied nowhere (it never reached a leader). */
function notApplied(e: ApiError): boolean {
  return (e.details as { outcome?: string } | undefined)?.outcome === 'not-applied';
}

/** How the connection failed (an `unreachable` error's errno code), if it did. */
function connectionOf(e: unknown): string | undefined {
  return e instanceof ApiError ? (e.details as { connection?: string } | undefined)?.connection : undefined;
}

function outcomeUnknown(e: ApiError): ApiError {
  return new ApiError(e.code, `${e.message}; an earlier attempt of this write reached the cluster and may have been applied (sending it again is safe: it keeps its request id)`, { ...(e.details as object | undefined), outcome: 'unknown' });
}

async function readResult<T>(res: IncomingMessage): Promise<T> {
  if ((res.statusCode ?? 500) >= 400) throw await errorFrom(res);
  return JSON.parse(await bodyOf(res)) as T;
}

// Events rather than an async iterator: the iterator's machinery costs more than a small body.
function bodyOf(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.once('end', () => resolve(chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8')));
    res.once('error', reject);
    res.once('aborted', () => reject(new ApiError('unreachable', 'the connection closed before the whole answer arrived')));
  });
}

async function errorFrom(res: IncomingMessage): Promise<ApiError> {
  const text = await bodyOf(res);
  try {
    const e = (JSON.parse(text) as { error: { code: ErrorCode; message: string; details?: unknown } }).error;
    return new ApiError(e.code, e.message, e.details);
  } catch {
    return new ApiError(codeForStatus(res.statusCode ?? 500), text || `HTTP ${res.statusCode}`);
  }
}
