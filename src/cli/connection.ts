import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ApiClient, liveRecords, readRecord } from '../api/index.js';
import { parseDuration } from '../state/index.js';

// Which node the CLI talks to, and with what token (SPEC section 3): --server / BLIXARD_SERVER,
// --token / BLIXARD_TOKEN, --data-dir / BLIXARD_DATA_DIR (token from D/token, API from D's
// settings); with none of them, the record a running `node start` left for itself.

export const DEFAULT_SERVER = 'http://127.0.0.1:7400';

export interface GlobalOptions {
  server?: string;
  token?: string;
  dataDir?: string;
  /** A command's own --timeout (apply --wait, node drain --wait) also bounds its retries. */
  timeout?: string;
}

/** How long a command keeps asking a cluster that has no leader right now (SPEC section 12). */
export const DEFAULT_RETRY = '30s';

export interface Connection {
  server: string;
  token: string | undefined;
}

export async function resolveConnection(g: GlobalOptions, env: NodeJS.ProcessEnv = process.env): Promise<Connection> {
  let server = g.server ?? env.BLIXARD_SERVER;
  let token = g.token ?? env.BLIXARD_TOKEN;
  const dataDir = g.dataDir ?? env.BLIXARD_DATA_DIR;
  if (dataDir) {
    token ??= await readToken(dataDir);
    server ??= await apiOfDataDir(dataDir);
  }
  if (!server && !token) {
    // The default address if a node runs there, else the newest node on this machine.
    const rec = (await liveRecord(DEFAULT_SERVER, env)) ?? (await liveRecords(env))[0];
    if (rec) return { server: rec.api, token: await readToken(rec.dataDir) };
  }
  server ??= DEFAULT_SERVER;
  if (!token) {
    const rec = await liveRecord(server, env);
    if (rec) token = await readToken(rec.dataDir);
  }
  return { server: normalizeServer(server), token };
}

export async function connect(g: GlobalOptions): Promise<ApiClient> {
  const c = await resolveConnection(g);
  return new ApiClient({ server: c.server, ...(c.token ? { token: c.token } : {}), retryMs: retryMsOf(g.timeout) });
}

function retryMsOf(timeout: string | undefined): number {
  try {
    return parseDuration(timeout ?? DEFAULT_RETRY);
  } catch {
    return parseDuration(DEFAULT_RETRY); // the command reports its own bad --timeout
  }
}

function normalizeServer(s: string): string {
  return /^https?:\/\//.test(s) ? s : `http://${s}`;
}

async function liveRecord(api: string, env: NodeJS.ProcessEnv) {
  const rec = await readRecord(normalizeServer(api), env);
  if (!rec) return undefined;
  return (await liveRecords(env)).find((r) => r.api === rec.api && r.pid === rec.pid);
}

async function readToken(dataDir: string): Promise<string | undefined> {
  try {
    return (await readFile(path.join(dataDir, 'token'), 'utf8')).trim() || undefined;
  } catch {
    return undefined;
  }
}

async function apiOfDataDir(dataDir: string): Promise<string | undefined> {
  try {
    const s = JSON.parse(await readFile(path.join(dataDir, 'node.json'), 'utf8')) as { api?: string };
    // A node started with port 0 records its real address in the server record, not here.
    const recs = await liveRecords();
    const rec = recs.find((r) => path.resolve(r.dataDir) === path.resolve(dataDir));
    if (rec) return rec.api;
    return s.api ? normalizeServer(s.api) : undefined;
  } catch {
    return undefined;
  }
}
