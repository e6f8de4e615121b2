import { randomUUID } from 'node:crypto';
import { ApiError } from '../api/index.js';
import type { ApplyRequest, ApplyResponse, DeleteRequest, DeleteResponse, PlanRequest, ResourceJson, WatchEvent } from '../api/index.js';
import { Coalescer } from '../lifecycle/index.js';
import { ACTION_WORD, buildPlan, checkDesired, checkDocuments, planChanges, schemaDocsFrom, type Finding, type Plan } from '../manifest/index.js';
import { API_VERSION, matchesSelector, parseSelector, SelectorError, type ApplyOutcome, type DeleteOutcome, type DesiredStateStore, type Kind, type Selector, type StoredResource } from '../state/index.js';
import type { Changes } from './changes.js';
import type { Events } from './events.js';
import { requestIdOf, type Leader } from './leader.js';
import { imageStatus, peerStatus, vmStatus, type StatusFacts } from './status-model.js';

// The resources of the API: list, get and watch them; validate, plan, apply and delete sets of
// them. Writes and linearizable reads run on the leader (callers reach this through Leader.run);
// `local` reads and watches answer from this node's replica.

export interface ResourcesOptions {
  store: DesiredStateStore;
  leader: Leader;
  events: Events;
  changes: Changes;
  facts: StatusFacts;
  /** Whether this node holds an image's content whole. */
  heldHere: (hash: string) => Promise<boolean>;
  /** A node on its own (--p2p off) admits no Peer. */
  p2pOff: boolean;
}

export class Resources {
  constructor(private readonly o: ResourcesOptions) {}

  /** Filtered before any status is built: a selector is how a caller watches a few of many. */
  async list(kind: Kind, selector: string, linearizable: boolean): Promise<ResourceJson[]> {
    const sel = parseSelectorOrThrow(selector);
    if (linearizable) await this.o.leader.linearizable();
    return Promise.all(this.o.store.list(kind).filter((r) => matchesSelector(r.metadata.labels, sel)).map((r) => this.toJson(r)));
  }

  async get(kind: Kind, name: string, linearizable: boolean): Promise<ResourceJson | undefined> {
    if (linearizable) await this.o.leader.linearizable();
    const r = this.o.store.get(kind, name);
    return r ? this.toJson(r) : undefined;
  }

  async watch(kind: Kind, selector: string, emit: (e: WatchEvent) => void, signal: AbortSignal): Promise<void> {
    const sel = parseSelectorOrThrow(selector);
    const { store } = this.o;
    const sent = new Map<string, string>(); // name -> JSON of the form last sent
    let all = true;
    let dirty = new Set<string>();
    // Only what changed is looked at again (and sent): a watch of 100 VMs costs a status per
    // change, where polling a list built and sent all 100 each time.
    const look = async (): Promise<void> => {
      const names = all ? null : dirty;
      all = false;
      dirty = new Set();
      const present = new Set<string>();
      const rs = names === null ? store.list(kind) : [...names].flatMap((n) => store.get(kind, n) ?? []);
      for (const r of rs) {
        if (!matchesSelector(r.metadata.labels, sel)) continue;
        present.add(r.metadata.name);
        const obj = await this.toJson(r);
        const json = JSON.stringify(obj);
        const prev = sent.get(r.metadata.name);
        if (prev === json) continue;
        sent.set(r.metadata.name, json);
        emit({ type: prev === undefined ? 'ADDED' : 'MODIFIED', object: obj });
      }
      for (const name of names ?? [...sent.keys()]) {
        const last = sent.get(name);
        if (last === undefined || present.has(name)) continue;
        sent.delete(name);
        emit({ type: 'DELETED', object: JSON.parse(last) as ResourceJson });
      }
    };
    if (signal.aborted) return;
    await look();
    emit({ type: 'SYNCED' });
    let chain = Promise.resolve();
    const pass = new Coalescer(() => {
      chain = chain.then(look).catch(() => {});
    }, 20);
    const listener = (names: Iterable<string> | null) => {
      if (names === null) all = true;
      else for (const n of names) dirty.add(n);
      pass.kick();
    };
    const unsubscribe = this.o.changes.subscribe(listener);
    // Readiness changes with time, not with entries (a node's heartbeat going stale).
    const tick = setInterval(() => listener(null), 1000);
    try {
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    } finally {
      clearInterval(tick);
      pass.cancel();
      unsubscribe();
      await chain;
    }
  }

  async validate(body: unknown): Promise<{ results: Finding[][] }> {
    const docs = schemaDocsFrom(body);
    if (typeof docs === 'string') throw new ApiError('invalid', docs);
    return { results: await checkDocuments(docs) };
  }

  async plan(req: PlanRequest): Promise<Plan> {
    const problems = await checkDesired(req.desired);
    const { store } = this.o;
    const inSet = new Set(req.desired.filter((d) => d.kind === 'Image').map((d) => d.name));
    for (const d of req.desired) {
      if (d.kind !== 'VirtualMachine') continue;
      const image = (d.spec as { image: string }).image;
      if (!inSet.has(image) && !store.get('Image', image)) problems.push(`VirtualMachine/${d.name} spec.image: expected the name of an Image in this set or in the cluster, got "${image}"`);
    }
    if (problems.length > 0) throw new ApiError('invalid', problems.join('\n'), { problems });
    const applyset = req.applyset || 'default';
    return buildPlan({
      desired: req.desired,
      get: (k, n) => store.get(k, n),
      inventory: req.prune ? store.inventory(applyset) : [],
      applyset,
      prune: !!req.prune,
      id: randomUUID(),
      clusterId: store.clusterId,
      createdAt: new Date().toISOString(),
    });
  }

  async apply(req: ApplyRequest): Promise<ApplyResponse> {
    const { store, leader } = this.o;
    if (this.o.p2pOff) {
      // A Peer would be a voter or a worker this node can never reach (and a voter, a lost quorum).
      const peer = ('plan' in req && req.plan ? req.plan.changes.filter((c) => c.action !== 'prune') : 'desired' in req ? req.desired : []).find((d) => d.kind === 'Peer');
      if (peer) throw new ApiError('invalid', `Peer/${peer.name}: this node runs with --p2p off and admits no other node (restart it with --p2p on)`);
    }
    let plan: Plan;
    if (req.plan) {
      plan = req.plan;
      if (plan.kind !== 'Plan' || !Array.isArray(plan.changes) || typeof plan.id !== 'string') throw new ApiError('invalid', 'expected a saved plan (from `blixard diff --out FILE`)');
      if (plan.clusterId !== store.clusterId) throw new ApiError('invalid', `the plan was made for cluster ${plan.clusterId}, this is cluster ${store.clusterId}`);
      const problems = await checkDesired(plan.changes.filter((c) => c.desired).map((c) => ({ kind: c.kind, name: c.name, labels: c.desired!.labels, spec: c.desired!.spec })));
      if (problems.length > 0) throw new ApiError('invalid', problems.join('\n'), { problems });
    } else {
      plan = await this.plan(req);
    }
    const prunes = plan.changes.filter((c) => c.action === 'prune').map((c) => `${c.kind}/${c.name}`);
    if (prunes.length > req.maxPrune) {
      throw new ApiError('invalid', `--prune would delete ${prunes.length} resources, more than --max-prune ${req.maxPrune}: ${prunes.join(', ')}`, { prune: prunes });
    }
    if (req.dryRun) {
      return { planId: plan.id, dryRun: true, index: null, results: plan.changes.map((c) => ({ kind: c.kind, name: c.name, action: ACTION_WORD[c.action] })) };
    }
    const revision = typeof req.revision === 'string' && req.revision.length <= 100 ? { revision: req.revision } : {};
    const { index, outcome } = await leader.commit({ op: 'apply', time: new Date().toISOString(), planId: plan.id, applyset: plan.applyset, changes: planChanges(plan), ...revision, ...requestIdOf(req) });
    const out = outcome as ApplyOutcome;
    if (!out.ok) throw new ApiError(out.code === 'conflict' ? 'conflict' : 'invalid', out.message, out.code === 'conflict' ? { conflicts: out.conflicts } : undefined);
    // A retried request is answered as its first attempt was; its events were recorded then.
    if (out.index !== index) return { planId: plan.id, dryRun: false, index: out.index, results: out.results };
    const changes = new Map(plan.changes.map((c) => [`${c.kind}/${c.name}`, c]));
    for (const r of out.results) {
      if (r.action === 'unchanged') continue;
      const change = changes.get(`${r.kind}/${r.name}`);
      const what = change?.action === 'configure' ? ` (${change.effect}: ${change.fields.map((f) => f.field).join(', ')})` : '';
      const gen = store.get(r.kind, r.name)?.metadata.generation;
      this.o.events.record(r.kind, r.name, 'Normal', r.action === 'pruned' ? 'Pruned' : r.action === 'created' ? 'Created' : 'Configured', `${r.action} at index ${out.index}${gen ? `, generation ${gen}` : ''}${what}`);
    }
    return { planId: plan.id, dryRun: false, index: out.index, results: out.results };
  }

  async delete(req: DeleteRequest): Promise<DeleteResponse> {
    const { index, outcome } = await this.o.leader.commit({ op: 'delete', time: new Date().toISOString(), targets: req.targets, ...requestIdOf(req) });
    const out = outcome as DeleteOutcome;
    if (!out.ok) throw new ApiError('invalid', out.message);
    if (out.index === index) for (const r of out.results) if (r.action === 'deleted') this.o.events.record(r.kind, r.name, 'Normal', 'Deleted', `deleted at index ${out.index}`);
    return { index: out.index, results: out.results };
  }

  async toJson(r: StoredResource): Promise<ResourceJson> {
    const f = this.o.facts;
    const status = r.kind === 'VirtualMachine' ? vmStatus(f, r) : r.kind === 'Image' ? imageStatus(f, r, !!r.source?.hash && (await this.o.heldHere(r.source.hash).catch(() => false))) : peerStatus(f, r);
    return { apiVersion: API_VERSION, kind: r.kind, metadata: r.metadata, spec: r.spec, status };
  }
}

export function parseSelectorOrThrow(text: string): Selector {
  try {
    return parseSelector(text);
  } catch (e) {
    if (e instanceof SelectorError) throw new ApiError('invalid', e.message);
    throw e;
  }
}
