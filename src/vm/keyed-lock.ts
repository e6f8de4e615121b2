// Runs async work one at a time per key (per VM name), different keys concurrently: two
// reconciler passes, or an API call and a pass, never start or stop the same VM at once.

export class KeyedLock {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const before = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = before.then(() => mine);
    this.tails.set(key, tail);
    await before;
    try {
      return await fn();
    } finally {
      release();
      // Forget the key once nobody queued behind us, so the map does not grow with every VM ever seen.
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
