import { readdir, readFile, stat } from 'node:fs/promises';
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
      if (text === null) fileError('<stdin>', `is over the limit of ${mib(max)} per manifest file`);
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

  // Read in bounded parallel batches: a folder of 10,000 manifests should not open 10,000 fds.
  const unique = [...new Set(files)];
  for (let i = 0; i < unique.length; i += 64) {
    const batch = await Promise.all(
      unique.slice(i, i + 64).map(async (file) => {
        const abs = path.resolve(cwd, file);
        try {
          const st = await stat(abs);
          if (st.size > max) return { file, error: `is ${mib(st.size)}, over the limit of ${mib(max)} per manifest file` };
          return { file, text: await readFile(abs, 'utf8'), dir: path.dirname(abs) };
        } catch (err) {
          return { file, error: `cannot be read: ${(err as Error).message}` };
        }
      }),
    );
    for (const r of batch) {
      if ('error' in r) fileError(r.file, r.error as string);
      else sources.push({ file: r.file, dir: r.dir, text: r.text });
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
