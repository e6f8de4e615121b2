import type { ApiClient } from '../api/index.js';
import { ManifestSetError, checkDocuments, formatError, loadManifests, type ImageFile, type ImageHashing, type LoadedSet, type SchemaCheck } from '../manifest/index.js';
import { paint, type Out, UsageError } from './output.js';

// What apply and diff share: load a set against a server (asking it for Images only when a VM
// names one outside the set), and upload the image files the server does not hold yet.

export async function loadAgainst(client: ApiClient, paths: string[] | undefined, recursive: boolean, out: Out): Promise<LoadedSet> {
  if (!paths || paths.length === 0) throw new UsageError('-f: expected at least one file, folder or - (stdin)');
  const set = await loadManifests(paths, {
    recursive,
    stdin: process.stdin,
    hashFiles: true,
    hashing: imageHashing,
    schemaCheck: nodeCheck(client),
    clusterImages: async () => new Set((await client.list('Image')).map((r) => r.metadata.name)),
  });
  for (const w of set.warnings) out.err(paint(out, 'yellow', formatError(w)) + '\n');
  if (set.errors.length > 0) throw new ManifestSetError(set.errors);
  return set;
}

/** Image files and blob tickets are hashed by images/, loaded only for a set that names one. */
export const imageHashing: ImageHashing = {
  file: async (abs) => (await import('../images/index.js')).blake3File(abs),
  ticket: async (ticket) => (await import('../images/index.js')).hashOfTicket(ticket),
};

/**
 * The node checks the schemas: it has zod loaded, this short-lived process would pay ~60 ms to
 * import it. JSON cannot carry YAML's .inf and .nan, so documents holding them (always invalid)
 * are checked here, loading zod only then.
 */
export function nodeCheck(client: ApiClient): SchemaCheck {
  return async (docs) => {
    const here = docs.map((d) => !jsonExact(d.value));
    if (!here.includes(true)) return client.validate(docs);
    const remote = await client.validate(docs.filter((_, i) => !here[i]));
    const local = await checkDocuments(docs.filter((_, i) => here[i]));
    let l = 0;
    let r = 0;
    return here.map((h) => (h ? local[l++]! : remote[r++]!));
  };
}

/** Whether a parsed YAML value survives JSON unchanged (no NaN or infinite numbers). */
function jsonExact(v: unknown): boolean {
  if (typeof v === 'number') return Number.isFinite(v);
  if (Array.isArray(v)) return v.every(jsonExact);
  if (v !== null && typeof v === 'object') return Object.values(v).every(jsonExact);
  return true;
}

/** Streams each file the node lacks into its blob store (content-addressed: re-uploads are skipped). */
export async function uploadFiles(client: ApiClient, files: ImageFile[]): Promise<void> {
  for (const f of files) {
    if (await client.hasBlob(f.hash)) continue;
    const bar = await (await import('./progress.js')).transferBar(`upload ${f.ref} ${f.role}`, f.size);
    try {
      await client.putBlob(f.hash, f.abs, (sent) => bar.update(sent));
    } finally {
      bar.stop();
    }
  }
}
