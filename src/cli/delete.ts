import type { Command } from 'commander';
import { ApiError, resolveKind, KIND_WORDS } from '../api/index.js';
import type { Kind } from '../state/index.js';
import { connect } from './connection.js';
import { loadAgainst } from './manifests.js';
import { ExitStatus, terminal, UsageError } from './output.js';

// `blixard delete -f PATH..` or `blixard delete KIND NAME`: one request, one log entry.

export default async function del(
  kindWord: string | undefined,
  name: string | undefined,
  opts: { filename?: string[]; recursive?: boolean },
  cmd: Command,
): Promise<void> {
  const out = terminal();
  const byFile = !!opts.filename?.length;
  if (byFile === !!kindWord) throw new UsageError('expected either -f PATH or KIND NAME');
  const client = await connect(cmd.optsWithGlobals());
  try {
    let targets: { kind: Kind; name: string }[];
    if (byFile) {
      const set = await loadAgainst(client, opts.filename, !!opts.recursive, out);
      targets = set.desired.map((d) => ({ kind: d.kind, name: d.name }));
    } else {
      const kind = resolveKind(kindWord!);
      if (!kind || kind === 'Node') throw new UsageError(`expected a kind of vm, image or peer, got ${JSON.stringify(kindWord)} (known: ${KIND_WORDS.join(', ')})`);
      if (!name) throw new UsageError('expected a NAME after the kind');
      targets = [{ kind, name }];
    }
    const res = await client.delete({ targets });
    let missing = 0;
    for (const r of res.results) {
      if (r.action === 'deleted') out.write(`${r.kind}/${r.name} deleted\n`);
      else {
        missing++;
        out.err(`error: ${r.kind}/${r.name} not found\n`);
      }
    }
    if (missing > 0) throw new ExitStatus(1);
  } catch (e) {
    if (e instanceof ApiError && e.code === 'invalid') throw new ApiError('invalid', `${e.message}; nothing was deleted`);
    throw e;
  } finally {
    client.close();
  }
}
