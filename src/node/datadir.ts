import { createPublicKey, createPrivateKey, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../storage/index.js';
import { pidExists } from '../host/index.js';

// A node's data dir: identity, token, settings, the desired-state log, the Iroh store and the
// lock that keeps a second daemon out.

export function dataPaths(dir: string) {
  return {
    root: dir,
    key: path.join(dir, 'node.key'),
    token: path.join(dir, 'token'),
    settings: path.join(dir, 'node.json'),
    lock: path.join(dir, 'daemon.lock'),
    state: path.join(dir, 'state'),
    iroh: path.join(dir, 'iroh'),
    incoming: path.join(dir, 'incoming'),
  };
}

export class DataDirInUseError extends Error {
  constructor(dir: string, pid: number) {
    super(`data dir ${dir} is in use by another blixard daemon (pid ${pid}); stop it first or use another --data-dir`);
    this.name = 'DataDirInUseError';
  }
}

/**
 * Takes the data dir's lock (a pid file created exclusively). A lock whose process is gone is
 * stale (the daemon was killed) and is taken over; a live one means "in use": fail at once.
 */
export async function lockDataDir(dir: string): Promise<() => Promise<void>> {
  const file = dataPaths(dir).lock;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(file, 'wx', 0o600);
      await fh.writeFile(String(process.pid));
      await fh.sync();
      await fh.close();
      return async () => {
        const owner = Number((await readFile(file, 'utf8').catch(() => '')).trim());
        if (owner === process.pid) await unlink(file).catch(() => {});
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
      if (pid > 0 && pid !== process.pid && pidExists(pid)) throw new DataDirInUseError(dir, pid);
      await unlink(file).catch(() => {});
    }
  }
  throw new Error(`could not take the lock ${file}`);
}

export interface Identity {
  secretKey: Buffer;
  nodeId: string;
}

// Ed25519 PKCS#8 DER prefix for a raw 32-byte seed; Iroh's node id is the hex public key.
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');

export function nodeIdOf(secretKey: Buffer): string {
  const priv = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, secretKey]), format: 'der', type: 'pkcs8' });
  return createPublicKey(priv).export({ format: 'der', type: 'spki' }).subarray(12).toString('hex');
}

/** The node's key: created once, kept for life (iroh-ffi's persistent node does not keep it). */
export async function loadOrCreateIdentity(dir: string): Promise<Identity> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = dataPaths(dir).key;
  let hex: string;
  try {
    hex = (await readFile(file, 'utf8')).trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    hex = randomBytes(32).toString('hex');
    await writeFileAtomic(file, hex + '\n', { mode: 0o600, sync: 'all' });
  }
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`${file} is not a node key (expected 64 hex digits)`);
  const secretKey = Buffer.from(hex, 'hex');
  return { secretKey, nodeId: nodeIdOf(secretKey) };
}

/** The API bearer token, mode 0600, created once. */
export async function loadOrCreateToken(dir: string): Promise<string> {
  const file = dataPaths(dir).token;
  try {
    const t = (await readFile(file, 'utf8')).trim();
    if (t) return t;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const token = randomBytes(32).toString('base64url');
  await writeFileAtomic(file, token, { mode: 0o600, sync: 'all' });
  return token;
}
