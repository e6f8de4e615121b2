import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { DesiredResource, ImageSource } from '../state/index.js';
import { formatPath, show, type ManifestError } from './errors.js';
import type { DocRef, Manifest } from './parse.js';
import { BLAKE3_REF } from './patterns.js';

// Checks that need the whole set (and the disk): duplicate names, references between resources,
// and the files Images name. Produces the desired resources the planner works on.

export interface SetOptions {
  /**
   * The names of the Images the cluster holds, asked only when a VM names an Image outside the
   * set. `null` means there is no server (`validate`): such a VM then gets a warning, not an error.
   */
  clusterImages: (() => Promise<ReadonlySet<string>>) | null;
  /** Hash image files (apply, diff) or only check they exist (fast validate of huge sets). */
  hashFiles: boolean;
  /** How image content is hashed (images/ knows; this folder does not import it). */
  hashing: ImageHashing;
}

/**
 * Hashing an Image's file and reading the content hash out of a blob ticket. images/ does both
 * (BLAKE3, Iroh tickets) and sits above this folder, so the caller hands them in; the CLI loads
 * images/ only for a set that needs it (a command pays for every module it imports at start-up).
 */
export interface ImageHashing {
  /** The content hash of a file (blake3:<64 hex>) and its size. */
  file(abs: string): Promise<{ hash: string; size: number }>;
  /** The content hash an Iroh blob ticket names; throws if it is not a valid ticket. */
  ticket(ticket: string): Promise<string>;
}

export interface ImageFile {
  ref: string; // Image/name
  role: 'path' | 'initrd';
  abs: string;
  hash: string;
  size: number;
}

export interface CheckedSet {
  errors: ManifestError[];
  desired: DesiredResource[];
  /** Local files to upload before the apply, one per distinct content. */
  files: ImageFile[];
}

/**
 * `refs` names every document of the set with a kind and a name, including those with schema
 * errors, so a duplicate or a reference is judged against the whole set as written.
 */
export async function checkSet(manifests: Manifest[], opts: SetOptions, refs: DocRef[] = manifests): Promise<CheckedSet> {
  const errors: ManifestError[] = [];
  const err = (m: DocRef, p: (string | number)[], message: string, severity: 'error' | 'warning' = 'error') =>
    errors.push({ file: m.file, ...m.locate(p), ref: `${m.kind}/${m.name}`, path: formatPath(p), message, severity });

  const first = new Map<string, DocRef>();
  for (const r of refs) {
    const key = `${r.kind}/${r.name}`;
    const prev = first.get(key);
    if (prev) {
      const at = prev.locate(['metadata', 'name']);
      err(r, ['metadata', 'name'], `expected a name unique per kind, got a second ${key} (first at ${prev.file}:${at.line}:${at.col})`);
    } else first.set(key, r);
  }

  const peerIds = new Map<string, Manifest>();
  for (const m of manifests) {
    if (m.kind !== 'Peer') continue;
    const prev = peerIds.get(m.spec.nodeId);
    if (prev) {
      const at = prev.locate(['spec', 'nodeId']);
      err(m, ['spec', 'nodeId'], `expected a node id used by one Peer only, got the node id of Peer/${prev.name} again (first at ${prev.file}:${at.line}:${at.col})`);
    } else peerIds.set(m.spec.nodeId, m);
  }

  // An Image of the set with errors of its own is still "in the set": no misleading lookup.
  const images = new Set(refs.filter((r) => r.kind === 'Image').map((r) => r.name));
  const outside = manifests.filter((m) => m.kind === 'VirtualMachine' && !images.has(m.spec.image));
  const inCluster = outside.length > 0 && opts.clusterImages ? await opts.clusterImages() : null;
  for (const m of outside) {
    if (m.kind !== 'VirtualMachine') continue;
    if (inCluster === null) {
      err(m, ['spec', 'image'], `Image/${m.spec.image} is not in this set (it must already exist in the cluster)`, 'warning');
    } else if (!inCluster.has(m.spec.image)) {
      err(m, ['spec', 'image'], `expected the name of an Image in this set or in the cluster, got "${m.spec.image}"`);
    }
  }

  // Image content: hash each distinct file once, however many Images name it.
  const digests = new Map<string, Promise<{ hash: string; size: number } | Error>>();
  const digest = (abs: string) => {
    let p = digests.get(abs);
    if (!p) {
      p = (async () => {
        try {
          const st = await stat(abs);
          if (!st.isFile()) return new Error('is not a regular file');
          if (!opts.hashFiles) return { hash: '', size: st.size };
          return await opts.hashing.file(abs);
        } catch (e) {
          return new Error((e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message);
        }
      })();
      digests.set(abs, p);
    }
    return p;
  };

  const files: ImageFile[] = [];
  const sources = new Map<Manifest, ImageSource>();
  await Promise.all(
    manifests.map(async (m) => {
      if (m.kind !== 'Image') return;
      const spec = m.spec;
      const source: Partial<ImageSource> = {};
      if (spec.path !== undefined) {
        const abs = path.resolve(m.dir, spec.path);
        const d = await digest(abs);
        if (d instanceof Error) return err(m, ['spec', 'path'], `expected an image file, got ${JSON.stringify(spec.path)}: ${d.message} (resolved to ${abs})`);
        source.hash = d.hash;
        source.size = d.size;
        if (opts.hashFiles) files.push({ ref: `Image/${m.name}`, role: 'path', abs, hash: d.hash, size: d.size });
      } else if (spec.blob !== undefined) {
        if (BLAKE3_REF.test(spec.blob)) source.hash = spec.blob;
        else {
          try {
            source.hash = await opts.hashing.ticket(spec.blob);
          } catch (e) {
            // Iroh's message carries a Rust cause chain (and a backtrace with RUST_BACKTRACE): keep its first line.
            const why = ((e as Error).message.split('\n')[0] ?? '').trim();
            return err(m, ['spec', 'blob'], `expected a valid Iroh blob ticket, got ${show(spec.blob)}${why ? ` (${why})` : ''}`);
          }
        }
        source.size = null;
      }
      if (spec.initrd !== undefined) {
        const abs = path.resolve(m.dir, spec.initrd);
        const d = await digest(abs);
        if (d instanceof Error) return err(m, ['spec', 'initrd'], `expected an initrd file, got ${JSON.stringify(spec.initrd)}: ${d.message} (resolved to ${abs})`);
        source.initrdHash = d.hash;
        source.initrdSize = d.size;
        if (opts.hashFiles) files.push({ ref: `Image/${m.name}`, role: 'initrd', abs, hash: d.hash, size: d.size });
      }
      if (spec.hash !== undefined && opts.hashFiles && source.hash !== undefined && source.hash !== spec.hash) {
        return err(m, ['spec', 'hash'], `expected the image content to match the pinned ${spec.hash}, got ${source.hash}`);
      }
      if (source.hash !== undefined) sources.set(m, source as ImageSource);
    }),
  );

  const desired: DesiredResource[] = manifests.map((m) => {
    const d: DesiredResource = { kind: m.kind, name: m.name, labels: m.labels, spec: m.spec };
    const s = sources.get(m);
    if (s && opts.hashFiles) d.source = s;
    return d;
  });
  const seen = new Set<string>();
  return { errors, desired, files: files.filter((f) => (seen.has(f.hash) ? false : (seen.add(f.hash), true))) };
}
