import { LineCounter, isMap, isScalar, isSeq, parseAllDocuments, visit } from 'yaml';
import type { Document, Node as YamlNode, YAMLError } from 'yaml';
import { KINDS, type ImageSpec, type Kind, type Labels, type PeerSpec, type VmSpec } from '../state/index.js';
import { formatPath, show, type ManifestError } from './errors.js';
import type { SchemaCheck, SchemaDoc, Seg } from './schema-docs.js';
import type { Source } from './sources.js';
import { closest } from './suggest.js';

// YAML text -> typed manifests, with every problem located (eemeli/yaml + zod, as in DESIGN.md).
// The schema check is passed in (schema-check.ts): zod in this process, or the node's.

const KIND_NAMES: readonly string[] = KINDS;

/** YAML aliases may expand at most this many times per document ("billion laughs" guard). */
export const MAX_ALIAS_COUNT = 100;

export type Manifest =
  | ManifestOf<'VirtualMachine', VmSpec>
  | ManifestOf<'Image', ImageSpec>
  | ManifestOf<'Peer', PeerSpec>;

interface ManifestOf<K extends Kind, S> {
  kind: K;
  name: string;
  labels: Labels;
  spec: S;
  file: string;
  dir: string;
  /** 1-based line and column of the node at `path`, or the deepest existing node above it. */
  locate(path: readonly (string | number)[]): { line: number; col: number };
}

/** Every document with a known kind and a name, valid or not: for duplicate and reference checks. */
export interface DocRef {
  kind: Kind;
  name: string;
  file: string;
  locate(path: readonly (string | number)[]): { line: number; col: number };
}

export interface ParseResult {
  manifests: Manifest[];
  refs: DocRef[];
  errors: ManifestError[];
}

/** A document that parsed, with a known kind, waiting for its schema check. */
interface Candidate extends SchemaDoc {
  docIndex: number;
  ref: string;
}

/** What the YAML of one source holds. */
interface SourceDocs {
  candidates: Candidate[];
  refs: { kind: Kind; name: string; docIndex: number }[];
  errors: ManifestError[];
}

export async function parseSources(sources: Source[], check: SchemaCheck): Promise<ParseResult> {
  const manifests: Manifest[] = [];
  const refs: DocRef[] = [];
  const errors: ManifestError[] = [];
  const read = sources.map(readDocuments);
  const candidates: { c: Candidate; src: Source }[] = [];
  for (const [i, r] of read.entries()) {
    const src = sources[i]!;
    for (const ref of r.refs) refs.push({ kind: ref.kind, name: ref.name, file: src.file, locate: lazyLocator(src, ref.docIndex).value });
    errors.push(...r.errors);
    for (const c of r.candidates) candidates.push({ c, src });
  }
  // One check for the whole set: one round trip when the node checks.
  const findings = candidates.length > 0 ? await check(candidates.map(({ c }) => ({ kind: c.kind, value: c.value }))) : [];
  if (findings.length !== candidates.length) throw new Error(`schema check answered for ${findings.length} documents, expected ${candidates.length}`);
  for (const [i, { c, src }] of candidates.entries()) {
    const found = findings[i]!;
    if (found.length > 0) {
      const where = lazyLocator(src, c.docIndex);
      for (const f of found) {
        errors.push({ file: src.file, ...(f.at === 'key' ? where.key(f.atPath) : where.value(f.atPath)), ref: c.ref, path: formatPath(f.path), message: f.message, severity: 'error' });
      }
      continue;
    }
    const data = c.value as { metadata: { name: string; labels?: Labels }; spec: unknown };
    manifests.push({
      kind: c.kind,
      name: data.metadata.name,
      labels: data.metadata.labels ?? {},
      spec: data.spec,
      file: src.file,
      dir: src.dir,
      // Keeping 10,000 syntax trees alive for the rare set-level error costs more (in GC) than
      // parsing the one file again when such an error needs a position.
      locate: lazyLocator(src, c.docIndex).value,
    } as Manifest);
  }
  return { manifests, refs, errors };
}

/** YAML -> documents with a known kind (for the schema check), refs and YAML-level errors. */
function readDocuments(src: Source): SourceDocs {
  const lineCounter = new LineCounter();
  const candidates: Candidate[] = [];
  const refs: SourceDocs['refs'] = [];
  const errors: ManifestError[] = [];
  const at = (offset: number) => {
    const p = lineCounter.linePos(offset);
    return { line: p.line, col: p.col };
  };
  const docs = parseAllDocuments(src.text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  if (!Array.isArray(docs)) return { candidates, refs, errors }; // an empty stream: nothing to apply

  for (const [docIndex, doc] of docs.entries()) {
    const locate = (path: readonly (string | number)[]) => at(offsetOf(doc, path));
    // Kind and name as written, read from the syntax tree (no alias expansion, works with errors).
    const rawKind = scalarAt(doc, ['kind']);
    const rawName = scalarAt(doc, ['metadata', 'name']);
    const docRef = typeof rawName === 'string' ? `${typeof rawKind === 'string' ? rawKind : '?'}/${rawName}` : undefined;
    if (typeof rawKind === 'string' && KIND_NAMES.includes(rawKind) && typeof rawName === 'string') {
      refs.push({ kind: rawKind as Kind, name: rawName, docIndex });
    }

    if (doc.errors.length > 0) {
      const seenAt = new Set<number>();
      for (const e of doc.errors) {
        // One slip often trips several rules at the same place; the first says it best.
        if (seenAt.has(e.pos[0])) continue;
        seenAt.add(e.pos[0]);
        errors.push(yamlError(e, doc, src.file, at, docRef));
      }
      continue;
    }
    if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) continue; // `---` with nothing

    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    } catch (err) {
      // yaml throws (rather than reporting) for aliases: turn that into a located error.
      const message = (err as Error).message;
      const unresolved = /^Unresolved alias[^:]*: (.*)$/.exec(message);
      if (unresolved) {
        const alias = findAlias(doc, unresolved[1]!);
        errors.push({ file: src.file, ...at(alias?.range?.[0] ?? 0), ...(docRef ? { ref: docRef } : {}), message: `invalid YAML: ${message}`, severity: 'error' });
      } else {
        const bomb = /excessive alias count/i.test(message);
        errors.push({
          file: src.file,
          ...locate([]),
          ...(docRef ? { ref: docRef } : {}),
          message: bomb ? `expected at most ${MAX_ALIAS_COUNT} alias expansions, got more (YAML alias bomb?)` : `invalid YAML: ${message}`,
          severity: 'error',
        });
      }
      continue;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      errors.push({ file: src.file, ...locate([]), message: `expected a mapping with apiVersion, kind, metadata and spec, got ${show(value)}`, severity: 'error' });
      continue;
    }
    const obj = value as Record<string, unknown>;
    const kind = obj.kind;
    if (typeof kind !== 'string' || !KIND_NAMES.includes(kind)) {
      const hint = typeof kind === 'string' ? closest(kind, KIND_NAMES) : undefined;
      errors.push({
        file: src.file,
        ...locate(['kind']),
        ...(docRef ? { ref: docRef } : {}),
        path: 'kind',
        message:
          kind === undefined
            ? `required field is missing: expected one of ${KIND_NAMES.join(', ')}`
            : `expected one of ${KIND_NAMES.join(', ')}, got ${show(kind)}${hint ? ` (did you mean "${hint}"?)` : ''}`,
        severity: 'error',
      });
      continue;
    }
    candidates.push({ docIndex, kind: kind as Kind, value: obj, ref: docRef ?? `${kind}/?` });
  }
  return { candidates, refs, errors };
}

/** A YAML error, located; a duplicate key also names the resource, the field and the first key. */
function yamlError(e: YAMLError, doc: Document.Parsed, file: string, at: (o: number) => { line: number; col: number }, ref: string | undefined): ManifestError {
  if (e.code === 'DUPLICATE_KEY') {
    const dup = findDuplicateKey(doc.contents as YamlNode | null, e.pos[0], []);
    if (dup) {
      const first = at(dup.firstOffset);
      return {
        file,
        ...at(e.pos[0]),
        ...(ref ? { ref } : {}),
        path: formatPath(dup.path),
        message: `expected a key unique in its mapping, got a second ${JSON.stringify(dup.path[dup.path.length - 1])} (first at ${file}:${first.line}:${first.col})`,
        severity: 'error',
      };
    }
  }
  return { file, ...at(e.pos[0]), ...(ref ? { ref } : {}), message: yamlMessage(e.message), severity: 'error' };
}

function findDuplicateKey(node: YamlNode | null, offset: number, path: (string | number)[]): { path: (string | number)[]; firstOffset: number } | undefined {
  if (isMap(node)) {
    const keys = node.items.map((p) => (isScalar(p.key) ? String(p.key.value) : undefined));
    for (const [i, pair] of node.items.entries()) {
      const k = pair.key as YamlNode | null;
      if (k?.range?.[0] === offset && keys[i] !== undefined) {
        const first = node.items[keys.indexOf(keys[i])]!.key as YamlNode;
        return { path: [...path, keys[i]!], firstOffset: first.range?.[0] ?? offset };
      }
      const found = findDuplicateKey(pair.value as YamlNode | null, offset, [...path, keys[i] ?? '?']);
      if (found) return found;
    }
  } else if (isSeq(node)) {
    for (const [i, item] of node.items.entries()) {
      const found = findDuplicateKey(item as YamlNode | null, offset, [...path, i]);
      if (found) return found;
    }
  }
  return undefined;
}

function findAlias(doc: Document.Parsed, source: string): YamlNode | undefined {
  let found: YamlNode | undefined;
  visit(doc, {
    Alias(_, node) {
      if (node.source === source) {
        found = node;
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return found;
}

function scalarAt(doc: Document.Parsed, path: string[]): unknown {
  let node: YamlNode | null = doc.contents as YamlNode | null;
  for (const seg of path) {
    if (!isMap(node)) return undefined;
    const pair = node.items.find((p) => isScalar(p.key) && p.key.value === seg);
    node = (pair?.value as YamlNode | null) ?? null;
  }
  return isScalar(node) ? node.value : undefined;
}

interface Locator {
  /** The node at a path (or the deepest existing one above it). */
  value(path: readonly Seg[]): { line: number; col: number };
  /** The key of the pair at a path: where an unknown or missing field is shown. */
  key(path: readonly Seg[]): { line: number; col: number };
}

const reparsed = new WeakMap<Source, { docs: Document.Parsed[]; lineCounter: LineCounter }>();

function lazyLocator(src: Source, docIndex: number): Locator {
  const parsed = () => {
    let r = reparsed.get(src);
    if (!r) {
      const lineCounter = new LineCounter();
      const docs = parseAllDocuments(src.text, { lineCounter, uniqueKeys: true, prettyErrors: false });
      r = { docs: Array.isArray(docs) ? docs : [], lineCounter };
      reparsed.set(src, r);
    }
    return r;
  };
  const pos = (offset: (doc: Document.Parsed) => number) => {
    const r = parsed();
    const doc = r.docs[docIndex];
    const p = r.lineCounter.linePos(doc ? offset(doc) : 0);
    return { line: p.line, col: p.col };
  };
  return { value: (path) => pos((doc) => offsetOf(doc, path)), key: (path) => pos((doc) => keyOffset(doc, path)) };
}

/** Offset of the deepest node along `path` (DESIGN.md: walk doc.contents with get(seg, true)). */
function offsetOf(doc: Document.Parsed, path: readonly (string | number)[]): number {
  let node: YamlNode | null = doc.contents as YamlNode | null;
  let best = node?.range?.[0] ?? 0;
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      node = pair.value as YamlNode | null;
      // A key with no value (`image:`) has no value node: point at the key.
      const keyNode = pair.key as YamlNode;
      best = node?.range?.[0] ?? keyNode.range?.[0] ?? best;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg] as YamlNode | undefined;
      if (!item) break;
      node = item;
      best = item.range?.[0] ?? best;
    } else break;
  }
  return best;
}

/** Offset of the key of the pair at `path` (for unknown fields), else of the deepest node. */
function keyOffset(doc: Document.Parsed, path: readonly (string | number)[]): number {
  if (path.length === 0) return offsetOf(doc, path);
  const parent: YamlNode | null = nodeAt(doc, path.slice(0, -1));
  const last = path[path.length - 1];
  if (isMap(parent)) {
    const pair = parent.items.find((p) => isScalar(p.key) && String(p.key.value) === String(last));
    const k = pair?.key as YamlNode | undefined;
    if (k?.range) return k.range[0];
  }
  return offsetOf(doc, path);
}

function nodeAt(doc: Document.Parsed, path: readonly (string | number)[]): YamlNode | null {
  let node: YamlNode | null = doc.contents as YamlNode | null;
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) return node;
      node = pair.value as YamlNode | null;
    } else if (isSeq(node) && typeof seg === 'number') {
      node = (node.items[seg] as YamlNode | undefined) ?? node;
    } else return node;
  }
  return node;
}

function yamlMessage(m: string): string {
  // yaml's messages are good but sometimes end with a position we already print.
  return 'invalid YAML: ' + m.replace(/ at line \d+, column \d+.*$/s, '').trim();
}
