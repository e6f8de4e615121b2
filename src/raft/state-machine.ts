// What the Raft node (node.ts) applies committed entries to.

/**
 * The replicated state. `apply` must be deterministic and synchronous: every member applies the
 * same entries in the same order, and a member applies again, on every restart, the entries after
 * the snapshot it restores.
 *
 * `apply` should not throw: turn a bad command into a result value instead. If it does throw, the
 * node reports it through `onWarning`, the entry still counts as applied, and the proposal resolves
 * with the thrown error as its result; any change the state machine made before throwing is kept.
 */
export interface StateMachine {
  apply(data: Uint8Array, index: number): unknown;
  /** Serialise the whole state, as of the last applied index. */
  snapshot(): Uint8Array;
  /** Replace the whole state with a snapshot taken at `index`. */
  restore(data: Uint8Array, index: number): void;
}
