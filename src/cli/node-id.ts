import type { Command } from 'commander';
import { loadOrCreateIdentity } from '../node/index.js';
import { UsageError } from './output.js';

// `blixard node id --data-dir D`: the node id, without starting (or disturbing) a running daemon.

export default async function nodeId(_opts: unknown, cmd: Command): Promise<void> {
  const g = cmd.optsWithGlobals() as { dataDir?: string };
  const dataDir = g.dataDir ?? process.env.BLIXARD_DATA_DIR;
  if (!dataDir) throw new UsageError('--data-dir: required for node id');
  process.stdout.write((await loadOrCreateIdentity(dataDir)).nodeId + '\n');
}
