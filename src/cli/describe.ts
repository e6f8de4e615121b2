import type { Command } from 'commander';
import { resolveKind, KIND_WORDS, type Condition, type VmStatus } from '../api/index.js';
import { connect } from './connection.js';
import { age } from './age.js';
import { table, toYaml, UsageError } from './output.js';

// `blixard describe KIND NAME`: the resource, its conditions and its recent events, for people.

export default async function describe(kindWord: string, name: string, _opts: unknown, cmd: Command): Promise<void> {
  const kind = resolveKind(kindWord);
  if (!kind || kind === 'Node') throw new UsageError(`expected a kind of vm, image or peer, got ${JSON.stringify(kindWord)} (known: ${KIND_WORDS.join(', ')})`);
  const client = await connect(cmd.optsWithGlobals());
  try {
    const r = await client.get(kind, name);
    const events = await client.events(kind, name);
    const m = r.metadata;
    let text = '';
    text += `Name:               ${m.name}\n`;
    text += `Kind:               ${r.kind}\n`;
    text += `Labels:             ${Object.entries(m.labels).map(([k, v]) => `${k}=${v}`).join(', ') || '<none>'}\n`;
    text += `UID:                ${m.uid}\n`;
    text += `Generation:         ${m.generation}\n`;
    text += `Resource Version:   ${m.resourceVersion}\n`;
    text += `Created:            ${m.creationTimestamp} (${age(m.creationTimestamp)} ago)\n`;
    text += `Spec:\n${indent(toYaml(r.spec))}`;
    const { conditions, ...status } = r.status as VmStatus & { conditions?: Condition[] };
    text += `Status:\n${indent(toYaml(status))}`;
    if (conditions) {
      text += 'Conditions:\n';
      text += conditions.length
        ? indent(table(['TYPE', 'STATUS', 'REASON', 'AGE', 'MESSAGE'], conditions.map((c) => [c.type, c.status, c.reason, age(c.lastTransitionTime), c.message])))
        : '  <none>\n';
    }
    text += 'Events:\n';
    text += events.length
      ? indent(table(['TYPE', 'REASON', 'AGE', 'MESSAGE'], [...events].reverse().map((e) => [e.type, e.reason, age(e.time), e.message])))
      : '  <none>\n';
    process.stdout.write(text);
  } finally {
    client.close();
  }
}

function indent(s: string): string {
  return s
    .split('\n')
    .map((l) => (l ? `  ${l}` : l))
    .join('\n');
}
