import type { z } from 'zod';
import { API_VERSION, KINDS, type DesiredResource } from '../state/index.js';
import { formatPath, show } from './errors.js';
import { BLAKE3_REF } from './patterns.js';
import { SCHEMAS, knownKeys } from './schema.js';
import type { Finding, SchemaCheck, SchemaDoc, Seg } from './schema-docs.js';
import { closest } from './suggest.js';

// The schema half of validation, apart from YAML: documents in, findings (field path, message and
// where to point) out. Findings are plain data so the check can run where zod is already loaded:
// in-process for `validate` and watch mode, on the node (POST /v1/validate) for `apply` and `diff`,
// whose start-up would otherwise pay ~60 ms to import zod. The caller maps findings to lines.

export function checkDocuments(docs: readonly SchemaDoc[]): Finding[][] {
  return docs.map((d) => {
    const schema = (SCHEMAS as Record<string, z.ZodType>)[d.kind];
    if (!schema) return [{ path: ['kind'], message: `expected one of ${KINDS.join(', ')}, got ${show(d.kind)}`, at: 'value', atPath: ['kind'] }];
    const parsed = schema.safeParse(d.value, { reportInput: true });
    return parsed.success ? [] : parsed.error.issues.flatMap((iss) => issueFindings(iss, d.kind));
  });
}

export const checkLocally: SchemaCheck = async (docs) => checkDocuments(docs);

function issueFindings(iss: z.core.$ZodIssue, kind: string): Finding[] {
  const path = iss.path.filter((s): s is Seg => typeof s !== 'symbol');
  if (iss.code === 'unrecognized_keys') {
    const known = knownKeys(kind, path);
    return iss.keys.map((key) => {
      const hint = closest(key, known.filter((k) => !iss.keys.includes(k)));
      return {
        path: [...path, key],
        message: `unknown field${hint ? ` (did you mean "${hint}"?)` : `; expected one of ${known.join(', ')}`}`,
        at: 'key' as const,
        atPath: [...path, key],
      };
    });
  }
  if (iss.code === 'invalid_key') {
    // A bad key of a record (labels): the key's own problem, shown at the key.
    return [{ path, message: iss.issues[0]?.message ?? iss.message, at: 'key', atPath: path }];
  }
  let message = iss.message;
  if (iss.code === 'invalid_value' && typeof iss.input === 'string') {
    const hint = closest(iss.input, iss.values.map(String));
    if (hint) message += ` (did you mean "${hint}"?)`;
  }
  // A missing key points at the mapping that lacks it; its own key line is what editors show.
  const missing = iss.input === undefined && iss.code !== 'custom';
  return [missing ? { path, message, at: 'key', atPath: path.slice(0, -1) } : { path, message, at: 'value', atPath: path }];
}

/**
 * The server's own check of a set that arrives over the API (it may not come from this CLI): the
 * same schemas, reported by resource and field since there is no file to point into.
 */
export function checkDesired(desired: unknown): string[] {
  if (!Array.isArray(desired)) return ['expected "desired" to be a list of resources'];
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const [i, raw] of desired.entries()) {
    const d = raw as Partial<DesiredResource>;
    const kind = String(d?.kind);
    const schema = (SCHEMAS as Record<string, z.ZodType>)[kind];
    if (!schema) {
      problems.push(`desired[${i}] kind: expected one of ${KINDS.join(', ')}, got ${show(d?.kind)}`);
      continue;
    }
    const ref = `${kind}/${String(d.name)}`;
    const r = schema.safeParse({ apiVersion: API_VERSION, kind, metadata: { name: d.name, labels: d.labels ?? {} }, spec: d.spec }, { reportInput: true });
    if (!r.success) {
      for (const iss of r.error.issues) problems.push(`${ref} ${formatPath(iss.path)}: ${iss.message}`);
      continue;
    }
    if (seen.has(ref)) problems.push(`${ref}: expected a name unique per kind, got it twice`);
    seen.add(ref);
    if (kind === 'Image' && d.source !== undefined && !BLAKE3_REF.test(String(d.source?.hash))) problems.push(`${ref} source.hash: expected blake3:<64 hex>`);
  }
  return problems;
}
