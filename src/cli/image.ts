import { access, constants, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import type { ImageStatus, ResourceJson } from '../api/index.js';
import { blake3File } from '../images/index.js';
import { formatBytes, type ImageFormat } from '../state/index.js';
import { connect } from './connection.js';
import { uploadFiles } from './manifests.js';
import { outputFormat, table, terminal, toJson, toYaml, UsageError } from './output.js';

// `blixard image push FILE --name N` puts a file into the cluster as an Image (its content in the
// node's store, from where every node that needs it fetches it), and `image ls` lists the images
// with their content hash, size and the nodes that hold them whole.

const FORMATS: ImageFormat[] = ['kernel', 'raw', 'qcow2', 'executable'];

async function guessFormat(file: string): Promise<ImageFormat | undefined> {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.qcow2') return 'qcow2';
  if (ext === '.raw' || ext === '.img') return 'raw';
  const executable = await access(file, constants.X_OK).then(() => true, () => false);
  return executable ? 'executable' : undefined;
}

export async function push(file: string, opts: { name: string; format?: string; readyPattern?: string; output?: string }, cmd: Command): Promise<void> {
  const out = terminal();
  if (opts.output !== undefined && opts.output !== 'json') throw new UsageError(`-o: expected json, got ${JSON.stringify(opts.output)}`);
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(opts.name) || opts.name.length > 63) throw new UsageError(`--name: expected a DNS-1123 label, got ${JSON.stringify(opts.name)}`);
  const abs = path.resolve(file);
  const st = await stat(abs).catch(() => null);
  if (!st?.isFile()) throw new UsageError(`${file}: no such file`);
  const format = (opts.format as ImageFormat | undefined) ?? (await guessFormat(abs));
  if (!format || !FORMATS.includes(format)) throw new UsageError(`--format: expected one of ${FORMATS.join(', ')}${opts.format ? `, got ${JSON.stringify(opts.format)}` : ` (cannot tell from ${path.basename(file)})`}`);
  const client = await connect(cmd.optsWithGlobals());
  try {
    const { hash, size } = await blake3File(abs);
    await uploadFiles(client, [{ ref: `Image/${opts.name}`, role: 'path', abs, hash, size }]);
    const spec = { blob: hash, format, ...(opts.readyPattern !== undefined ? { readyPattern: opts.readyPattern } : {}) };
    const res = await client.apply({ desired: [{ kind: 'Image', name: opts.name, labels: {}, spec, source: { hash, size } }], applyset: `image/${opts.name}`, prune: false, maxPrune: 0, dryRun: false });
    const action = res.results[0]?.action ?? 'unchanged';
    if (opts.output === 'json') out.write(toJson({ name: opts.name, hash, size, format, action }));
    else out.write(`Image/${opts.name} ${action} (${hash}, ${formatBytes(size)})\n`);
  } finally {
    client.close();
  }
}

export async function ls(opts: { output?: string }, cmd: Command): Promise<void> {
  const format = outputFormat(opts.output, ['table', 'json', 'yaml', 'wide']);
  const out = terminal();
  const client = await connect(cmd.optsWithGlobals());
  try {
    const [imgs, nodes] = await Promise.all([client.list('Image'), client.nodes()]);
    const name = (id: string) => nodes.find((n) => n.nodeId === id)?.name ?? id.slice(0, 10);
    const rows = imgs.map((i: ResourceJson) => {
      const st = i.status as ImageStatus;
      return { name: i.metadata.name, format: (i.spec as { format: string }).format, hash: st.hash, size: st.size, holders: st.holders.map(name) };
    });
    if (format === 'json') return void out.write(toJson({ items: rows }));
    if (format === 'yaml') return void out.write(toYaml({ items: rows }));
    out.write(
      table(
        ['NAME', 'FORMAT', 'HASH', 'SIZE', 'HOLDERS'],
        rows.map((r) => [r.name, r.format, r.hash ? (format === 'wide' ? r.hash : `${r.hash.slice(0, 19)}..`) : '<none>', r.size === null ? '<unknown>' : formatBytes(r.size), r.holders.join(',') || '<none>']),
      ),
    );
  } finally {
    client.close();
  }
}
