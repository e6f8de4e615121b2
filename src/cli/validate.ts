import type { Command } from 'commander';
import { ManifestSetError, formatError, loadManifests } from '../manifest/index.js';
import { imageHashing } from './manifests.js';
import { paint, terminal } from './output.js';

// `blixard validate`: parse and check a set without a server. Exit 0 or 2.

export default async function validate(opts: { filename: string[]; recursive?: boolean }, _cmd: Command): Promise<void> {
  const out = terminal();
  const set = await loadManifests(opts.filename, { recursive: !!opts.recursive, stdin: process.stdin, clusterImages: null, hashFiles: true, hashing: imageHashing });
  for (const w of set.warnings) out.err(paint(out, 'yellow', formatError(w)) + '\n');
  if (set.errors.length > 0) throw new ManifestSetError(set.errors);
  const n = set.manifests.length;
  out.write(`${n} resource${n === 1 ? '' : 's'} valid\n`);
}
