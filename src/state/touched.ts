// Which keys of a map changed since someone last asked: the leader then publishes only those into
// the cluster document instead of re-reading the whole store on every commit. Bounded: past
// `limit` keys (nobody asked for a long time, e.g. on a follower) it only says "everything".

export class Touched<K> {
  private keys = new Set<K>();
  private everything = true; // nobody has seen anything yet

  constructor(private readonly limit = 50_000) {}

  add(key: K): void {
    if (this.everything) return;
    this.keys.add(key);
    if (this.keys.size > this.limit) this.all();
  }

  all(): void {
    this.everything = true;
    this.keys.clear();
  }

  /** The keys changed since the last call, or 'all'; starts over. */
  take(): Set<K> | 'all' {
    const out = this.everything ? 'all' : this.keys;
    this.everything = false;
    this.keys = new Set();
    return out;
  }
}

/** A Map that notes in `touched` every key it sets or deletes. */
export class TouchedMap<K, V> extends Map<K, V> {
  touched?: Touched<K>;

  override set(key: K, value: V): this {
    this.touched?.add(key);
    return super.set(key, value);
  }

  override delete(key: K): boolean {
    this.touched?.add(key);
    return super.delete(key);
  }

  override clear(): void {
    this.touched?.all();
    super.clear();
  }
}
