import { createRequire } from 'node:module';
import type { Operation } from 'fast-json-patch';
import { withDefaults } from './defaults.js';
import type { Effect, ImageSource, Kind, Labels, Spec } from './types.js';

// The one place that decides what a change does to a running VM. The planner labels diffs and
// saved plans with it, and the node reconciler uses the same answer to decide between updating in
// place, restarting the guest, or recreating it (Terraform's "forces replacement", per field).

// fast-json-patch (CommonJS, four files) is required on the first comparison, not when this folder
// is imported: CLI commands that only need its types, units or kinds do not pay for it at start.
let patchModule: typeof import('fast-json-patch') | undefined;
function jsonPatch(): typeof import('fast-json-patch') {
  return (patchModule ??= createRequire(import.meta.url)('fast-json-patch') as typeof import('fast-json-patch'));
}

/** The parts of a resource that an apply compares, with defaults applied. */
export interface Comparable {
  metadata: { labels: Labels };
  spec: Spec;
  source?: ImageSource;
}

export function comparable(kind: Kind, labels: Labels, spec: Spec, source?: ImageSource): Comparable {
  const c: Comparable = { metadata: { labels: sortedLabels(labels) }, spec: withDefaults(kind, spec) };
  if (source) {
    const s: ImageSource = { hash: source.hash, size: source.size };
    if (source.initrdHash !== undefined) s.initrdHash = source.initrdHash;
    if (source.initrdSize !== undefined) s.initrdSize = source.initrdSize;
    c.source = s;
  }
  return c;
}

function sortedLabels(l: Labels): Labels {
  const out: Labels = {};
  for (const k of Object.keys(l).sort()) out[k] = l[k] as string;
  return out;
}

const RANK: Record<Effect, number> = { none: 0, 'in-place': 1, restart: 2, recreate: 3 };

export function maxEffect(a: Effect, b: Effect): Effect {
  return RANK[a] >= RANK[b] ? a : b;
}

// Longest matching prefix wins. Anything not listed is `in-place`: it changes no guest.
const VM_FIELDS: [string, Effect][] = [
  ['/spec/image', 'recreate'], // another disk
  ['/spec/vcpus', 'recreate'], // the hypervisor is started with them
  ['/spec/memoryMiB', 'recreate'],
  ['/spec/placement/nodeSelector', 'recreate'], // the VM may have to move to another node
  ['/spec/placement/spreadBy', 'in-place'], // a soft preference: running VMs stay put
  ['/spec/kernelArgs', 'restart'], // read at boot; the disk overlay survives
  ['/spec/ports', 'restart'], // hostfwd rules are set when the hypervisor starts
  ['/spec/state', 'in-place'], // starting or stopping is exactly what was asked
  ['/spec/restartPolicy', 'in-place'],
  ['/metadata/labels', 'in-place'],
];

// For an Image: the effect on the VMs that run it. Paths and pins are names; content decides.
function imageFields(format: string): [string, Effect][] {
  const disk = format === 'raw' || format === 'qcow2';
  return [
    ['/spec/format', 'recreate'],
    ['/source/hash', disk ? 'recreate' : 'restart'], // a disk overlay cannot sit on new content
    ['/source/initrdHash', 'restart'],
    ['/source/size', 'in-place'],
    ['/source/initrdSize', 'in-place'],
    ['/spec/blob', 'in-place'],
    ['/spec/path', 'in-place'],
    ['/spec/initrd', 'in-place'],
    ['/spec/hash', 'in-place'],
    ['/spec/readyPattern', 'in-place'],
    ['/metadata/labels', 'in-place'],
  ];
}

/** The effect a change at `pointer` (a JSON pointer into a Comparable) has on a running VM. */
export function fieldEffect(kind: Kind, pointer: string, imageFormat = 'kernel'): Effect {
  const table = kind === 'VirtualMachine' ? VM_FIELDS : kind === 'Image' ? imageFields(imageFormat) : [];
  let best: [string, Effect] | undefined;
  for (const row of table) {
    if ((pointer === row[0] || pointer.startsWith(row[0] + '/')) && (!best || row[0].length > best[0].length)) best = row;
  }
  // A Peer never touches a guest; anything else unknown is conservatively a restart.
  if (!best) return kind === 'Peer' ? 'in-place' : pointer.startsWith('/metadata/') ? 'in-place' : 'restart';
  return best[1];
}

export interface FieldChange {
  field: string; // dotted, as users write it: spec.placement.nodeSelector.zone
  op: Operation['op'];
  effect: Effect;
}

export interface ChangeEffects {
  patch: Operation[];
  fields: FieldChange[];
  effect: Effect;
  /** True when the spec or the content changed (bumps `generation`); labels alone do not. */
  specChanged: boolean;
}

/** What turns `before` into `after`, and what that does to a running VM. */
export function changeEffects(kind: Kind, before: Comparable, after: Comparable): ChangeEffects {
  const patch = jsonPatch().compare(before, after);
  const format = (after.spec as { format?: string }).format ?? 'kernel';
  let effect: Effect = 'none';
  let specChanged = false;
  const fields: FieldChange[] = [];
  for (const op of patch) {
    const e = fieldEffect(kind, op.path, format);
    effect = maxEffect(effect, e);
    if (!op.path.startsWith('/metadata/')) specChanged = true;
    fields.push({ field: pointerToField(op.path), op: op.op, effect: e });
  }
  return { patch, fields, effect, specChanged };
}

export function pointerToField(pointer: string): string {
  let out = '';
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (/^\d+$/.test(seg)) out += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}
