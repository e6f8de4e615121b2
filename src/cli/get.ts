import type { Command } from 'commander';
import { ApiError, resolveKind, KIND_WORDS, type ApiClient, type ImageStatus, type NodeJson, type PeerStatus, type ResourceJson, type VmStatus } from '../api/index.js';
import { formatBytes, matchesSelector, parseSelector, SelectorError, withDefaults, type ImageSpec, type Kind, type PeerSpec, type Selector, type VmSpec } from '../state/index.js';
import { connect } from './connection.js';
import { age } from './age.js';
import { outputFormat, table, toJson, toYaml, UsageError } from './output.js';

// `blixard get KIND [NAME]`: a table, or -o json|yaml|name|wide (SPEC section 3 shapes).

export default async function get(kindWord: string, name: string | undefined, opts: { output?: string; selector?: string; watch?: boolean }, cmd: Command): Promise<void> {
  const kind = resolveKind(kindWord);
  if (!kind) throw new UsageError(`unknown kind ${JSON.stringify(kindWord)}: expected one of ${KIND_WORDS.join(', ')}`);
  const format = outputFormat(opts.output, ['table', 'json', 'yaml', 'name', 'wide']);
  if (opts.selector !== undefined && name) throw new UsageError('a NAME and a label selector (-l) cannot be combined: give one of them');
  // Checked here too, so a bad selector is a usage error before anything is asked of the node.
  const sel = opts.selector === undefined ? undefined : parseSelectorOrUsage(opts.selector);
  if (opts.watch && kind === 'Node') throw new UsageError('-w (watch) is for vm, image and peer; nodes: blixard get nodes');
  const client = await connect(cmd.optsWithGlobals());
  try {
    if (opts.watch && kind !== 'Node') return await watch(client, kind, name, opts.selector, format);
    if (kind === 'Node') {
      let nodes = await client.nodes();
      if (sel) nodes = nodes.filter((n) => matchesSelector(n.labels, sel));
      if (name) {
        nodes = nodes.filter((n) => n.name === name || n.nodeId === name);
        if (nodes.length === 0) throw new ApiError('not-found', `node ${name} not found`);
      }
      const one = name ? nodes[0] : undefined;
      if (format === 'json') return void process.stdout.write(toJson(one ?? { items: nodes }));
      if (format === 'yaml') return void process.stdout.write(toYaml(one ?? { items: nodes }));
      if (format === 'name') return void process.stdout.write(nodes.map((n) => `Node/${n.name}\n`).join(''));
      return void process.stdout.write(nodeTable(nodes, format === 'wide'));
    }
    const items = name ? [await client.get(kind, name)] : await client.list(kind, opts.selector ? { selector: opts.selector } : {});
    if (format === 'json') return void process.stdout.write(toJson(name ? items[0] : { items }));
    if (format === 'yaml') return void process.stdout.write(toYaml(name ? items[0] : { items }));
    if (format === 'name') return void process.stdout.write(items.map((r) => `${r.kind}/${r.metadata.name}\n`).join(''));
    if (items.length === 0) return void process.stderr.write(`No ${kind} resources found.\n`);
    process.stdout.write(resourceTable(items, format === 'wide'));
  } finally {
    client.close();
  }
}

/**
 * `get -w`: what is there now, then a line for every change until interrupted (kubectl get -w):
 * table rows under one header, or one JSON event per line with -o json, or TYPE KIND/NAME with -o name.
 */
async function watch(client: ApiClient, kind: Exclude<Kind, 'Node'>, name: string | undefined, selector: string | undefined, format: string): Promise<void> {
  const stop = new AbortController();
  const interrupted = () => stop.abort();
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  let header = true;
  let initial: ResourceJson[] = [];
  let synced = false;
  const row = (r: ResourceJson) => {
    const lines = resourceTable([r], format === 'wide').split('\n');
    if (header) process.stdout.write(`${lines[0]}\n`);
    header = false;
    process.stdout.write(`${lines[1]}\n`);
  };
  try {
    await client.watch(kind, { signal: stop.signal, ...(selector ? { selector } : {}) }, (e) => {
      if (e.type === 'SYNCED') {
        synced = true;
        if (format === 'table' || format === 'wide') {
          if (initial.length > 0) process.stdout.write(resourceTable(initial, format === 'wide'));
          header = initial.length === 0;
        }
        initial = [];
        return;
      }
      if (name && e.object.metadata.name !== name) return;
      if (format === 'json') return void process.stdout.write(`${JSON.stringify(e)}\n`);
      if (format === 'yaml') return void process.stdout.write(`---\n${toYaml(e)}`);
      if (format === 'name') return void process.stdout.write(`${e.type} ${e.object.kind}/${e.object.metadata.name}\n`);
      if (!synced) return void initial.push(e.object);
      const r = e.type === 'DELETED' ? { ...e.object, status: { ...e.object.status, phase: 'Deleted' } as unknown as ResourceJson['status'] } : e.object;
      row(r);
    });
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
  }
}

function parseSelectorOrUsage(text: string): Selector {
  try {
    return parseSelector(text);
  } catch (e) {
    if (e instanceof SelectorError) throw new UsageError(e.message);
    throw e;
  }
}

export function resourceTable(items: ResourceJson[], wide: boolean): string {
  const kind = items[0]!.kind;
  if (kind === 'VirtualMachine') {
    return table(
      ['NAME', 'PHASE', 'NODE', 'VCPUS', 'MEMORY', 'AGE', ...(wide ? ['IMAGE', 'STATE', 'GENERATION', 'MESSAGE'] : [])],
      items.map((r) => {
        const s = withDefaults('VirtualMachine', r.spec) as VmSpec;
        const st = r.status as VmStatus;
        return [
          r.metadata.name,
          st.phase,
          st.nodeId ? st.nodeId.slice(0, 10) : '<none>',
          String(s.vcpus),
          `${s.memoryMiB}Mi`,
          age(r.metadata.creationTimestamp),
          ...(wide ? [s.image, s.state!, `${st.observedGeneration}/${r.metadata.generation}`, st.message] : []),
        ];
      }),
    );
  }
  if (kind === 'Image') {
    return table(
      ['NAME', 'FORMAT', 'HASH', 'SIZE', 'HOLDERS', 'AGE', ...(wide ? ['SOURCE'] : [])],
      items.map((r) => {
        const s = r.spec as ImageSpec;
        const st = r.status as ImageStatus;
        return [
          r.metadata.name,
          s.format,
          st.hash ? (wide ? st.hash : st.hash.slice(0, 19)) : '<none>',
          st.size === null ? '<unknown>' : formatBytes(st.size),
          String(st.holders.length),
          age(r.metadata.creationTimestamp),
          ...(wide ? [s.path ?? s.blob ?? ''] : []),
        ];
      }),
    );
  }
  return table(
    ['NAME', 'NODE-ID', 'ROLE', 'READY', 'CONNECTED', 'RTT', 'ADDRESSES', 'AGE'],
    items.map((r) => {
      const s = withDefaults('Peer', r.spec) as PeerSpec;
      const st = r.status as PeerStatus;
      return [
        r.metadata.name,
        wide ? s.nodeId : s.nodeId.slice(0, 10),
        s.role!,
        st.ready ? 'True' : 'False',
        st.connected ? 'True' : 'False',
        st.rttMs === null ? '<none>' : `${st.rttMs}ms`,
        (s.addresses ?? []).join(',') || '<none>',
        age(r.metadata.creationTimestamp),
      ];
    }),
  );
}

function nodeTable(nodes: NodeJson[], wide: boolean): string {
  return table(
    ['NAME', 'NODE-ID', 'ROLE', 'READY', 'VCPUS', 'MEMORY', ...(wide ? ['ALLOCATED', 'FORMATS', 'LABELS', 'API'] : [])],
    nodes.map((n) => [
      n.name,
      wide ? n.nodeId : n.nodeId.slice(0, 10),
      n.role,
      (n.ready ? 'True' : 'False') + (n.cordoned ? ',SchedulingDisabled' : ''),
      String(n.capacity.vcpus),
      `${n.capacity.memoryMiB}Mi`,
      ...(wide
        ? [
            `${n.allocated.vcpus} vcpu, ${n.allocated.memoryMiB}Mi`,
            n.formats.join(',') || '<none>',
            Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(',') || '<none>',
            n.api ?? '<none>',
          ]
        : []),
    ]),
  );
}
