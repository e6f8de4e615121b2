// The replicated state machine of the simulation: a string key-value map with put and
// compare-and-set, and a session table (Raft thesis 6.3) so that a command retried by its client
// is applied at most once: each client has one command outstanding at a time, numbered by `seq`.

export type KvCommand =
  | { client: string; seq: number; kind: 'put'; key: string; value: string }
  | { client: string; seq: number; kind: 'cas'; key: string; expected: string | null; value: string };

/** put: always true. cas: whether it swapped. */
export type KvResult = boolean;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeCommand(c: KvCommand): Uint8Array {
  return encoder.encode(JSON.stringify(c));
}

export function decodeCommand(data: Uint8Array): KvCommand {
  return JSON.parse(decoder.decode(data)) as KvCommand;
}

interface Session {
  seq: number;
  result: KvResult;
}

export class KvStore {
  applied = 0;
  private readonly data = new Map<string, string>();
  private readonly sessions = new Map<string, Session>();

  get(key: string): string | null {
    return this.data.get(key) ?? null;
  }

  /**
   * Applies a command, or recognises a duplicate: the same seq again returns the first result; an
   * older seq (a retry that lost the race to a newer command of its client) is ignored.
   */
  apply(c: KvCommand): { result: KvResult; duplicate: boolean } {
    const s = this.sessions.get(c.client);
    if (s !== undefined && c.seq <= s.seq) return { result: c.seq === s.seq ? s.result : false, duplicate: true };
    let result = true;
    if (c.kind === 'put') {
      this.data.set(c.key, c.value);
    } else if ((this.data.get(c.key) ?? null) === c.expected) {
      this.data.set(c.key, c.value);
    } else {
      result = false;
    }
    this.sessions.set(c.client, { seq: c.seq, result });
    return { result, duplicate: false };
  }

  /** The whole state, canonical (sorted), so equal states give equal bytes. */
  snapshot(): Uint8Array {
    return encoder.encode(this.digest());
  }

  digest(): string {
    const data = [...this.data].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const sessions = [...this.sessions].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return JSON.stringify({ data, sessions });
  }

  static restore(bytes: Uint8Array, index: number): KvStore {
    const kv = new KvStore();
    kv.applied = index;
    if (bytes.byteLength === 0) return kv;
    const parsed = JSON.parse(decoder.decode(bytes)) as { data: [string, string][]; sessions: [string, Session][] };
    for (const [k, v] of parsed.data) kv.data.set(k, v);
    for (const [k, s] of parsed.sessions) kv.sessions.set(k, s);
    return kv;
  }
}
