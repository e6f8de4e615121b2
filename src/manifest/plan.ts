import type { Operation } from 'fast-json-patch';
import {
  API_VERSION,
  changeEffects,
  comparable,
  resourceKey,
  type ApplyChange,
  type Comparable,
  type DesiredResource,
  type Effect,
  type FieldChange,
  type ImageSource,
  type Kind,
  type Labels,
  type Spec,
  type StoredResource,
} from '../state/index.js';

// Desired (files) against stored (the cluster's desired state) -> a plan: what an apply would
// create, configure, leave, or prune, each change labelled with its effect on a running VM. Pure.
// A plan records the resourceVersion it read of every resource it touches, so applying it later
// is refused if any of them changed in between (Terraform's saved plans, Nomad's check-index).

export type PlanAction = ApplyChange['action'];

export interface PlannedChange {
  kind: Kind;
  name: string;
  action: PlanAction;
  read: number;
  /** For configure: the strongest effect of its fields. create/prune/unchanged have none. */
  effect: Effect;
  fields: FieldChange[];
  patch: Operation[];
  before: Comparable | null;
  after: Comparable | null;
  desired?: { labels: Labels; spec: Spec; source?: ImageSource };
}

export interface Plan {
  apiVersion: typeof API_VERSION;
  kind: 'Plan';
  id: string;
  clusterId: string | null;
  applyset: string;
  prune: boolean;
  createdAt: string;
  changes: PlannedChange[];
}

export interface PlanInput {
  desired: DesiredResource[];
  get(kind: Kind, name: string): StoredResource | undefined;
  /** What the applyset's last apply left in the cluster; read only when pruning. */
  inventory: StoredResource[];
  applyset: string;
  prune: boolean;
  id: string;
  clusterId: string | null;
  createdAt: string;
}

export function buildPlan(input: PlanInput): Plan {
  const changes: PlannedChange[] = [];
  const inSet = new Set<string>();
  for (const d of input.desired) {
    inSet.add(resourceKey(d.kind, d.name));
    const cur = input.get(d.kind, d.name);
    const after = comparable(d.kind, d.labels, d.spec, d.source);
    const desired: PlannedChange['desired'] = { labels: d.labels, spec: d.spec };
    if (d.source) desired.source = d.source;
    if (!cur) {
      changes.push({ kind: d.kind, name: d.name, action: 'create', read: 0, effect: 'none', fields: [], patch: [{ op: 'add', path: '', value: after }], before: null, after, desired });
      continue;
    }
    const before = comparable(cur.kind, cur.metadata.labels, cur.spec, cur.source);
    const fx = changeEffects(d.kind, before, after);
    changes.push({
      kind: d.kind,
      name: d.name,
      action: fx.patch.length === 0 ? 'unchanged' : 'configure',
      read: cur.metadata.resourceVersion,
      effect: fx.effect,
      fields: fx.fields,
      patch: fx.patch,
      before,
      after,
      desired,
    });
  }
  if (input.prune) {
    for (const r of input.inventory) {
      if (inSet.has(resourceKey(r.kind, r.metadata.name))) continue;
      const before = comparable(r.kind, r.metadata.labels, r.spec, r.source);
      changes.push({ kind: r.kind, name: r.metadata.name, action: 'prune', read: r.metadata.resourceVersion, effect: 'none', fields: [], patch: [{ op: 'remove', path: '' }], before, after: null });
    }
  }
  return {
    apiVersion: API_VERSION,
    kind: 'Plan',
    id: input.id,
    clusterId: input.clusterId,
    applyset: input.applyset,
    prune: input.prune,
    createdAt: input.createdAt,
    changes,
  };
}

/** The log entry's changes for a plan: only what the store needs to re-check and apply it. */
export function planChanges(plan: Plan): ApplyChange[] {
  return plan.changes.map((c) => {
    const a: ApplyChange = { kind: c.kind, name: c.name, action: c.action, read: c.read };
    if (c.desired) {
      a.labels = c.desired.labels;
      a.spec = c.desired.spec;
      if (c.desired.source) a.source = c.desired.source;
    }
    return a;
  });
}

export function planCounts(plan: Plan): Record<PlanAction, number> {
  const n: Record<PlanAction, number> = { create: 0, configure: 0, unchanged: 0, prune: 0 };
  for (const c of plan.changes) n[c.action]++;
  return n;
}

/** Past-tense action words the CLI prints (kubectl's): created, configured, unchanged, pruned. */
export const ACTION_WORD: Record<PlanAction, 'created' | 'configured' | 'unchanged' | 'pruned'> = {
  create: 'created',
  configure: 'configured',
  unchanged: 'unchanged',
  prune: 'pruned',
};
