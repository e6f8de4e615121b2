import type { ApiClient } from '../api/index.js';
import { ManifestSetError, formatError, loadManifests, type ImageFile, type LoadedSet } from '../reconciler/index.js';
import { paint, type Out, UsageError } from './output.js';
import { transferBar } from './progress.js';

// What apply and diff share: load a set against a server (asking it for Images only when a VM
// names one outside the set), and upload the image files the server does not hold yet.

export async function loadAgainst(client: ApiClient, paths: string[] | undefined, recursive: boolean, out: Out): Promise<LoadedSet> {
  if (!paths || paths.length === 0) throw new UsageError('-f: expected at least one file, folder or - (stdin)');
  const set = await loadManifests(paths, {
    recursive,
    stdin: process.stdin,
    hashFiles: true,
    clusterImages: async () => new Set((await client.list('Image')).map((r) => r.metadata.name)),
  });
  for (const w of set.warnings) out.err(paint(out, 'yellow', formatError(w)) + '\n');
  if (set.errors.length > 0) throw new ManifestSetError(set.errors);
  return set;
}

/** Streams each file the node lacks into its blob store (content-addressed: re-uploads are skipped). */
export async function uploadFiles(client: ApiClient, files: ImageFile[]): Promise<void> {
  for (const f of files) {
    if (await client.hasBlob(f.hash)) continue;
    const bar = await transferBar(`upload ${f.ref} ${f.role}`, f.size);
    try {
      await client.putBlob(f.hash, f.abs, (sent) => bar.update(sent));
    } finally {
      bar.stop();
    }
  }
}
