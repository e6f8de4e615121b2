import type { Touched } from './touched.js';
import { resourceKey, type Kind, type StoredResource } from './types.js';

// The store's resources, found by kind and name and listed by kind without a scan of the rest:
// a cluster of 20,000 VMs has a handful of Peers, and membership looks at those on every apply.

export class ResourceTable {
  private readonly all = new Map<string, StoredResource>();
  private readonly kinds = new Map<Kind, Map<string, StoredResource>>();

  /** `touched` notes the key (Kind/name) of every resource set or deleted after construction. */
  constructor(resources: Iterable<StoredResource> = [], private readonly touched?: Touched<string>) {
    for (const r of resources) this.put(r);
  }

  get size(): number {
    return this.all.size;
  }

  get(kind: Kind, name: string): StoredResource | undefined {
    return this.all.get(resourceKey(kind, name));
  }

  has(kind: Kind, name: string): boolean {
    return this.all.has(resourceKey(kind, name));
  }

  /** Adds or replaces the resource of the same kind and name. */
  set(r: StoredResource): void {
    this.touched?.add(resourceKey(r.kind, r.metadata.name));
    this.put(r);
  }

  private put(r: StoredResource): void {
    this.all.set(resourceKey(r.kind, r.metadata.name), r);
    let m = this.kinds.get(r.kind);
    if (!m) this.kinds.set(r.kind, (m = new Map()));
    m.set(r.metadata.name, r);
  }

  delete(kind: Kind, name: string): boolean {
    this.touched?.add(resourceKey(kind, name));
    this.kinds.get(kind)?.delete(name);
    return this.all.delete(resourceKey(kind, name));
  }

  values(): IterableIterator<StoredResource> {
    return this.all.values();
  }

  ofKind(kind: Kind): IterableIterator<StoredResource> {
    return (this.kinds.get(kind) ?? new Map<string, StoredResource>()).values();
  }
}
