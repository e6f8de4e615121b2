import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { ManifestError } from './errors.js';

// Where manifests come from: files, folders (one level, or the whole tree with -R) and stdin.

export interface Source {
  file: string; // as shown in messages: the path the user gave, or <stdin>
  dir: string; // absolute folder that relative paths in the manifest resolve against
  text: string;
}

/** A manifest file bigger than this is refused: it is almost certainly not a manifest. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

export interface ReadOptions {
  recursive?: boolean;
  stdin?: AsyncIterable<Buffer | string>;
  cwd?: string;
  maxBytes?: number;
}

export async function readSources(paths: string[], opts: ReadOptions = {}): Promise<{ sources: Source[]; errors: ManifestError[] }> {
  const cwd = opts.cwd ?? process.cwd();
  const max = opts.maxBytes ?? MAX_MANIFEST_BYTES;
  const errors: ManifestError[] = [];
  const files: string[] = [];
  const sources: Source[] = [];
  const fileError = (file: string, message: string) => errors.push({ file, line: 0, col: 0, message, severity: 'error' });

  for (const p of paths) {
    if (p === '-') {
      if (!opts.stdin) {
        fileError('<stdin>', 'no standard input to read');
        continue;
      }
      const text = await readStdin(opts.stdin, max);
      if (text === null) fileError('<stdin>', `is over the limit of ${max} bytes (${mib(max)}) per manifest file`);
      else sources.push({ file: '<stdin>', dir: cwd, text });
      continue;
    }
    const abs = path.resolve(cwd, p);
    let st;
    try {
      st = await stat(abs);
    } catch {
      fileError(p, 'no such file or directory');
      continue;
    }
    if (st.isDirectory()) {
      const found = await walk(abs, p, !!opts.recursive);
      if (found.length === 0) fileError(p, `holds no manifest files (.yaml, .yml, .json)${opts.recursive ? '' : '; use -R for subfolders'}`);
      files.push(...found);
    } else files.push(p);
  }

  // Synchronous reads: the CLI does nothing else meanwhile, and for a folder of 10,000 small
  // manifests one open-read-close each is several times faster than the promise-based API.
  for (const file of new Set(files)) {
    const abs = path.resolve(cwd, file);
    try {
      const fd = openSync(abs, 'r');
      try {
        const size = fstatSync(fd).size;
        if (size > max) {
          fileError(file, `is ${size} bytes, over the limit of ${max} bytes (${mib(max)}) per manifest file`);
          continue;
        }
        sources.push({ file, dir: path.dirname(abs), text: readFileSync(fd, 'utf8') });
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      fileError(file, `cannot be read: ${(err as Error).message}`);
    }
  }
  return { sources, errors };
}

async function walk(abs: string, shown: string, recursive: boolean): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(abs, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const e of entries) {
    if (e.name.startsWith('.')) continue; // .git and editor files are never manifests
    const childShown = path.join(shown, e.name);
    if (e.isDirectory()) {
      if (recursive) out.push(...(await walk(path.join(abs, e.name), childShown, true)));
    } else if (EXTENSIONS.has(path.extname(e.name))) out.push(childShown);
  }
  return out;
}

async function readStdin(stdin: AsyncIterable<Buffer | string>, max: number): Promise<string | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of stdin) {
    const b = typeof c === 'string' ? Buffer.from(c) : c;
    size += b.length;
    if (size > max) return null;
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function mib(n: number): string {
  return `${(n / (1024 * 1024)).toFixed(n % (1024 * 1024) === 0 ? 0 : 1)} MiB`;
}
