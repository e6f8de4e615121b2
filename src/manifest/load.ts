import type { DesiredResource } from '../state/index.js';
import { sortErrors, type ManifestError } from './errors.js';
import { parseSources, type Manifest } from './parse.js';
import type { SchemaCheck } from './schema-docs.js';
import { readSources, type ReadOptions } from './sources.js';
import { checkSet, type ImageFile, type SetOptions } from './validate.js';

// The whole of step 2 of SPEC section 1 before anything talks to a server: read, parse, validate,
// resolve references, hash image files. Every problem of the set comes back at once.

export interface LoadedSet {
  errors: ManifestError[]; // severity error: the set must not be applied
  warnings: ManifestError[];
  manifests: Manifest[];
  desired: DesiredResource[];
  files: ImageFile[];
}

export interface LoadOptions extends ReadOptions, SetOptions {
  /** Who checks the schemas: by default zod in this process (loaded only then). */
  schemaCheck?: SchemaCheck;
}

export async function loadManifests(paths: string[], opts: LoadOptions): Promise<LoadedSet> {
  const read = await readSources(paths, opts);
  const check = opts.schemaCheck ?? (await import('./schema-check.js')).checkLocally;
  const parsed = await parseSources(read.sources, check);
  const checked = await checkSet(parsed.manifests, opts, parsed.refs);
  const all = sortErrors([...read.errors, ...parsed.errors, ...checked.errors]);
  return {
    errors: all.filter((e) => e.severity === 'error'),
    warnings: all.filter((e) => e.severity === 'warning'),
    manifests: parsed.manifests,
    desired: checked.desired,
    files: checked.files,
  };
}
