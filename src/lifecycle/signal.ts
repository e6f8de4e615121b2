// A callback handed to a part before whoever answers it exists (a Raft node reports applied
// entries from the moment it opens, before the parts that follow them are built). Calls before
// `connect` are dropped: nothing acts on the node's state until the node is assembled.

export class Signal<A extends unknown[] = []> {
  private handler: ((...args: A) => void) | undefined;

  connect(handler: (...args: A) => void): void {
    this.handler = handler;
  }

  emit(...args: A): void {
    this.handler?.(...args);
  }
}
