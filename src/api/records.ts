import { mkdir, readdir, readFile, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { writeFileAtomic } from '../storage/index.js';
import { pidExists } from '../host/index.js';

// The per-server record `node start` leaves under $XDG_CONFIG_HOME/blixard/servers/, so that a
// CLI with no --server, --token or --data-dir finds the local node and its token (kubeconfig's
// job, written by the server itself). It stores where the token is, never the token.

export interface ServerRecord {
  api: string; // http://127.0.0.1:7400
  nodeId: string;
  name: string;
  dataDir: string;
  pid: number;
  startedAt: string;
}

export function recordsDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : path.join(os.homedir(), '.config');
  return path.join(base, 'blixard', 'servers');
}

function fileFor(api: string, env?: NodeJS.ProcessEnv): string {
  const u = new URL(api);
  return path.join(recordsDir(env), `${u.hostname.replace(/[^A-Za-z0-9.-]/g, '_')}_${u.port || '80'}.json`);
}

export async function writeRecord(rec: ServerRecord, env?: NodeJS.ProcessEnv): Promise<void> {
  const file = fileFor(rec.api, env);
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await writeFileAtomic(file, JSON.stringify(rec, null, 2) + '\n', { mode: 0o600 });
}

/** Removes the record for `api` if it is still this process's. */
export async function removeRecord(api: string, pid: number, env?: NodeJS.ProcessEnv): Promise<void> {
  const file = fileFor(api, env);
  try {
    const rec = JSON.parse(await readFile(file, 'utf8')) as ServerRecord;
    if (rec.pid === pid) await unlink(file);
  } catch {
    // no record, or someone else's: nothing to do
  }
}

export async function readRecord(api: string, env?: NodeJS.ProcessEnv): Promise<ServerRecord | undefined> {
  try {
    return JSON.parse(await readFile(fileFor(api, env), 'utf8')) as ServerRecord;
  } catch {
    return undefined;
  }
}

/** Records of daemons that are still alive, newest first. */
export async function liveRecords(env?: NodeJS.ProcessEnv): Promise<ServerRecord[]> {
  let names: string[];
  try {
    names = await readdir(recordsDir(env));
  } catch {
    return [];
  }
  const out: ServerRecord[] = [];
  for (const n of names.filter((n) => n.endsWith('.json'))) {
    try {
      const rec = JSON.parse(await readFile(path.join(recordsDir(env), n), 'utf8')) as ServerRecord;
      if (pidExists(rec.pid)) out.push(rec);
    } catch {
      // a half-written or foreign file: skip it
    }
  }
  return out.sort((a, b) => (a.startedAt < b.startedAt ? 1 : -1));
}

