// Who hears that resources may have changed: the API's watches (each told the names, or null for
// any: a commit, a heartbeat, time passing). Costs nothing without watchers.

export class Changes {
  private readonly listeners = new Set<(names: Iterable<string> | null) => void>();

  subscribe(fn: (names: Iterable<string> | null) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(names: Iterable<string> | null): void {
    for (const fn of this.listeners) fn(names);
  }
}
