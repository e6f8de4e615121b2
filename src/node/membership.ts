import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { ClusterDocs } from '../state/index.js';
import { writeFileAtomic } from '../storage/index.js';

// What a data dir knows of the cluster it belongs to, kept beside the Raft state: which cluster,
// in which role, the document tickets a worker needs (voters have them in the Raft state), and
// the members it learned of when it joined (trusted before its own log tells it anything).

export interface Membership {
  clusterId: string;
  role: 'voter' | 'worker';
  docs: ClusterDocs | null;
  trusted: { nodeId: string; addresses: string[] }[];
  since: string;
}

const FILE = 'membership.json';

export async function readMembership(dataDir: string): Promise<Membership | undefined> {
  try {
    return JSON.parse(await readFile(path.join(dataDir, FILE), 'utf8')) as Membership;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`${path.join(dataDir, FILE)}: ${(e as Error).message}`);
  }
}

export async function writeMembership(dataDir: string, m: Membership): Promise<void> {
  await writeFileAtomic(path.join(dataDir, FILE), JSON.stringify(m, null, 2) + '\n', { mode: 0o600, sync: 'all' });
}

/** This data dir's membership as it stands: none yet, then set once (joined, bootstrapped or admitted). */
export class MembershipRecord {
  constructor(
    private readonly dataDir: string,
    private m: Membership | undefined,
  ) {}

  get current(): Membership | undefined {
    return this.m;
  }

  /** The members a join told us of: trusted before the log says anything. */
  get trusted(): Membership['trusted'] {
    return this.m?.trusted ?? [];
  }

  async set(m: Membership): Promise<void> {
    this.m = m;
    await writeMembership(this.dataDir, m);
  }
}
