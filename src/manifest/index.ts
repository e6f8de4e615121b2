import type { Finding, SchemaCheck, SchemaDoc } from './schema-docs.js';

export { loadManifests } from './load.js';
export type { LoadedSet, LoadOptions } from './load.js';
export { readSources, MAX_MANIFEST_BYTES } from './sources.js';
export type { Source, ReadOptions } from './sources.js';
export { parseSources, MAX_ALIAS_COUNT } from './parse.js';
export type { Manifest } from './parse.js';
export { checkSet } from './validate.js';
export type { ImageFile, ImageHashing, SetOptions } from './validate.js';
export { schemaDocsFrom } from './schema-docs.js';
export type { Finding, SchemaCheck, SchemaDoc } from './schema-docs.js';
export { formatError, sortErrors, formatPath, show, ManifestSetError } from './errors.js';
export type { ManifestError, Severity } from './errors.js';
export { closest } from './suggest.js';
export { buildPlan, planChanges, planCounts, ACTION_WORD } from './plan.js';
export type { Plan, PlannedChange, PlanAction, PlanInput } from './plan.js';

// The schemas are zod's, which costs a short-lived CLI process ~60 ms to import (apply and diff
// have the node check them instead). So zod is loaded on the first call of one of these, never by
// importing this index.

/** Checks documents against the schemas of their kinds: one list of findings per document. */
export async function checkDocuments(docs: readonly SchemaDoc[]): Promise<Finding[][]> {
  return (await import('./schema-check.js')).checkDocuments(docs);
}

/** The schema check in this process (what loadManifests uses when given none). */
export const checkLocally: SchemaCheck = checkDocuments;

/** The node's own check of a set arriving over the API: problems by resource and field. */
export async function checkDesired(desired: unknown): Promise<string[]> {
  return (await import('./schema-check.js')).checkDesired(desired);
}

/** The JSON Schema of every kind, for editors. */
export async function jsonSchema(): Promise<Record<string, unknown>> {
  return (await import('./schema.js')).jsonSchema();
}
