import type { Command } from 'commander';
import { parseDuration } from '../state/index.js';
import { connect } from './connection.js';
import { UsageError } from './output.js';

// `blixard node ticket`: exactly one line, a join ticket whose secret the leader commits.

export default async function nodeTicket(opts: { role: 'voter' | 'worker'; ttl: string }, cmd: Command): Promise<void> {
  let ttlMs: number;
  try {
    ttlMs = parseDuration(opts.ttl);
  } catch (e) {
    throw new UsageError(`--ttl: ${(e as Error).message}`);
  }
  const client = await connect(cmd.optsWithGlobals());
  try {
    const { ticket } = await client.ticket({ role: opts.role, ttlSeconds: Math.ceil(ttlMs / 1000) });
    process.stdout.write(ticket + '\n');
  } finally {
    client.close();
  }
}
