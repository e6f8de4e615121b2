import { KINDS, type Kind } from '../state/index.js';
import { show } from './errors.js';

// What a schema check takes and gives, as plain data (no zod here): documents in, findings (field
// path, message and where to point) out. The check itself is in schema-check.ts, loaded only where
// it runs (see index.ts).

export type Seg = string | number;

/** A document whose kind is known, as parsed from YAML (before any check). */
export interface SchemaDoc {
  kind: Kind;
  value: unknown;
}

export interface Finding {
  /** The field the message is about, as reported (spec.ports[0].host). */
  path: Seg[];
  message: string;
  /** Where to point: the key of the pair at `atPath`, or the value there. */
  at: 'key' | 'value';
  atPath: Seg[];
}

/** Checks documents against the schemas of their kinds: one list of findings per document. */
export type SchemaCheck = (docs: SchemaDoc[]) => Promise<Finding[][]>;

/** The body of POST /v1/validate, checked before it is trusted. */
export function schemaDocsFrom(body: unknown): SchemaDoc[] | string {
  const docs = (body as { documents?: unknown } | null)?.documents;
  if (!Array.isArray(docs)) return 'expected {"documents": [{"kind": ..., "value": ...}, ...]}';
  for (const [i, d] of docs.entries()) {
    const kind = (d as { kind?: unknown } | null)?.kind;
    if (typeof kind !== 'string' || !(KINDS as readonly string[]).includes(kind)) return `documents[${i}].kind: expected one of ${KINDS.join(', ')}, got ${show(kind)}`;
  }
  return docs as SchemaDoc[];
}
