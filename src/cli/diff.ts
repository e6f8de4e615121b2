import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { createTwoFilesPatch } from 'diff';
import type { ApiClient } from '../api/index.js';
import type { Plan, PlannedChange } from '../manifest/index.js';
import type { Comparable } from '../state/index.js';
import { connect } from './connection.js';
import { loadAgainst, uploadFiles } from './manifests.js';
import { ExitStatus, paint, terminal, toJson, UsageError, type Out } from './output.js';
import { plainYaml } from './plain-yaml.js';

// `blixard diff`: what an apply would change, as a unified diff (or RFC 6902 patches), each change
// labelled with its effect on a running VM. Exit 0 when nothing differs, 1 when something does.

interface DiffOptions {
  filename?: string[];
  recursive?: boolean;
  prune?: boolean;
  applyset: string;
  out?: string;
  actual?: boolean;
  output?: string;
}

export default async function diff(opts: DiffOptions, cmd: Command): Promise<void> {
  const out = terminal();
  if (opts.output !== undefined && opts.output !== 'json-patch') throw new UsageError(`-o: expected json-patch, got ${JSON.stringify(opts.output)}`);
  const client = await connect(cmd.optsWithGlobals());
  try {
    if (opts.actual) return await drift(client, opts, out);
    const set = await loadAgainst(client, opts.filename, !!opts.recursive, out);
    const plan = await client.plan({ desired: set.desired, applyset: opts.applyset, prune: !!opts.prune });
    if (opts.out) {
      // A saved plan must apply without the files: the server gets their content now.
      await uploadFiles(client, set.files);
      await writeFile(opts.out, JSON.stringify(plan, null, 2) + '\n');
    }
    const changed = plan.changes.filter((c) => c.action !== 'unchanged');
    if (opts.output === 'json-patch') {
      out.write(toJson(changed.map((c) => ({ kind: c.kind, name: c.name, action: c.action, effect: labelOf(c), fields: c.fields, patch: c.patch }))));
    } else {
      out.write(renderPlan(plan, out));
    }
    if (opts.out) out.err(`plan saved to ${opts.out}: apply it with \`blixard apply --plan ${opts.out}\`\n`);
    if (changed.length > 0) throw new ExitStatus(1);
  } finally {
    client.close();
  }
}

/** The label shown for a change: its action, or for an update, its effect on a running VM. */
export function labelOf(c: PlannedChange): string {
  if (c.action === 'create') return 'create';
  if (c.action === 'prune') return 'delete';
  return c.effect;
}

export function renderPlan(plan: Plan, out: Out): string {
  let text = '';
  for (const c of plan.changes) {
    if (c.action === 'unchanged') continue;
    const ref = `${c.kind}/${c.name}`;
    let head: string;
    if (c.action === 'configure') {
      const byEffect = new Map<string, string[]>();
      for (const f of c.fields) byEffect.set(f.effect, [...(byEffect.get(f.effect) ?? []), f.field]);
      const detail = [...byEffect].map(([e, fs]) => `${e}: ${fs.join(', ')}`).join('; ');
      head = `# ${ref}: configure, ${c.effect} (${detail})`;
    } else head = `# ${ref}: ${c.action === 'create' ? 'create' : 'prune (delete)'}`;
    text += paint(out, 'bold', head) + '\n';
    const patch = createTwoFilesPatch(`stored/${ref}`, `desired/${ref}`, view(c.name, c.before), view(c.name, c.after), '', '', { context: 3 });
    for (const line of patch.split('\n').slice(1)) {
      if (line === '' || line.startsWith('\\')) continue;
      if (line.startsWith('+++') || line.startsWith('---')) text += paint(out, 'bold', line) + '\n';
      else if (line.startsWith('+')) text += paint(out, 'green', line) + '\n';
      else if (line.startsWith('-')) text += paint(out, 'red', line) + '\n';
      else if (line.startsWith('@@')) text += paint(out, 'cyan', line) + '\n';
      else text += line + '\n';
    }
  }
  return text;
}

/** What a diff shows of a resource: name, labels, spec with defaults, and image content. */
function view(name: string, c: Comparable | null): string {
  if (!c) return '';
  const doc: Record<string, unknown> = { metadata: { name, ...(Object.keys(c.metadata.labels).length ? { labels: c.metadata.labels } : {}) }, spec: c.spec };
  if (c.source) doc.content = c.source;
  return plainYaml(doc);
}

/** `diff --actual`: where what is observed differs from what is stored. */
async function drift(client: ApiClient, opts: DiffOptions, out: Out): Promise<void> {
  let names: Set<string> | null = null;
  if (opts.filename?.length) {
    const set = await loadAgainst(client, opts.filename, !!opts.recursive, out);
    names = new Set(set.desired.map((d) => `${d.kind}/${d.name}`));
  }
  const items = (await client.drift()).filter((d) => !names || names.has(`${d.kind}/${d.name}`));
  if (opts.output === 'json-patch') out.write(toJson(items));
  else for (const d of items) out.write(`${paint(out, 'yellow', `${d.kind}/${d.name}`)}: ${d.why}${d.message ? ` (${d.message})` : ''}\n`);
  if (items.length > 0) throw new ExitStatus(1);
  out.err('no drift\n');
}
