import type { Entry, EntryType, HardState, Message, MessageType, Snapshot } from './core/index.js';

// Binary encodings of what Raft persists and sends: entries and hard state for the WAL, messages
// for the transport. Fixed little-endian fields; indices and terms as 48-bit integers (enough for
// 2.8e14 entries, and exact in a JS number).

const MESSAGE_TYPES: MessageType[] = [
  'MsgApp',
  'MsgAppResp',
  'MsgVote',
  'MsgVoteResp',
  'MsgPreVote',
  'MsgPreVoteResp',
  'MsgHeartbeat',
  'MsgHeartbeatResp',
  'MsgSnap',
  'MsgTimeoutNow',
  'MsgReadIndex',
  'MsgReadIndexResp',
  'MsgTransferLeader',
];
const TYPE_CODE = new Map(MESSAGE_TYPES.map((t, i) => [t, i]));

class Writer {
  private chunks: Buffer[] = [];
  private cur = Buffer.allocUnsafe(256);
  private pos = 0;
  private room(n: number): void {
    if (this.pos + n <= this.cur.length) return;
    this.chunks.push(this.cur.subarray(0, this.pos));
    this.cur = Buffer.allocUnsafe(Math.max(256, n));
    this.pos = 0;
  }
  u8(v: number): this {
    this.room(1);
    this.cur[this.pos++] = v;
    return this;
  }
  u48(v: number): this {
    this.room(6);
    this.cur.writeUIntLE(v, this.pos, 6);
    this.pos += 6;
    return this;
  }
  u32(v: number): this {
    this.room(4);
    this.cur.writeUInt32LE(v, this.pos);
    this.pos += 4;
    return this;
  }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    return this.u32(b.length).bytes(b);
  }
  bytes(b: Uint8Array): this {
    this.chunks.push(this.cur.subarray(0, this.pos));
    this.chunks.push(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
    this.cur = Buffer.allocUnsafe(256);
    this.pos = 0;
    return this;
  }
  blob(b: Uint8Array): this {
    return this.u32(b.length).bytes(b);
  }
  done(): Buffer {
    this.chunks.push(this.cur.subarray(0, this.pos));
    return Buffer.concat(this.chunks);
  }
}

class Reader {
  pos = 0;
  constructor(private readonly b: Buffer) {}
  u8(): number {
    return this.b[this.pos++]!;
  }
  u48(): number {
    const v = this.b.readUIntLE(this.pos, 6);
    this.pos += 6;
    return v;
  }
  u32(): number {
    const v = this.b.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  blob(): Buffer {
    const n = this.u32();
    if (this.pos + n > this.b.length) throw new Error('truncated record');
    const v = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  str(): string {
    return this.blob().toString('utf8');
  }
}

function writeEntry(w: Writer, e: Entry): void {
  w.u48(e.term).u48(e.index).u8(e.type === 'conf' ? 1 : 0).blob(e.data);
}

function readEntry(r: Reader): Entry {
  const term = r.u48();
  const index = r.u48();
  const type: EntryType = r.u8() === 1 ? 'conf' : 'normal';
  // A copy: the record's buffer may be reused, entries are kept.
  return { term, index, type, data: Uint8Array.from(r.blob()) };
}

function writeSnapshot(w: Writer, s: Snapshot): void {
  w.str(JSON.stringify(s.meta)).blob(s.data);
}

function readSnapshot(r: Reader): Snapshot {
  const meta = JSON.parse(r.str()) as Snapshot['meta'];
  return { meta, data: Uint8Array.from(r.blob()) };
}

export function encodeMessage(m: Message): Buffer {
  const w = new Writer();
  w.u8(TYPE_CODE.get(m.type)!).str(m.from).str(m.to).u48(m.term).u48(m.logTerm).u48(m.index).u48(m.commit).u8(m.reject ? 1 : 0).u48(m.rejectHint).str(m.context);
  w.u32(m.entries.length);
  for (const e of m.entries) writeEntry(w, e);
  w.u8(m.snapshot ? 1 : 0);
  if (m.snapshot) writeSnapshot(w, m.snapshot);
  return w.done();
}

export function decodeMessage(b: Uint8Array): Message {
  const r = new Reader(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  const type = MESSAGE_TYPES[r.u8()];
  if (!type) throw new Error('unknown Raft message type');
  const from = r.str();
  const to = r.str();
  const term = r.u48();
  const logTerm = r.u48();
  const index = r.u48();
  const commit = r.u48();
  const reject = r.u8() === 1;
  const rejectHint = r.u48();
  const context = r.str();
  const n = r.u32();
  const entries: Entry[] = [];
  for (let i = 0; i < n; i++) entries.push(readEntry(r));
  const m: Message = { type, from, to, term, logTerm, index, commit, reject, rejectHint, context, entries };
  if (r.u8() === 1) m.snapshot = readSnapshot(r);
  return m;
}

/** One WAL record per Ready: its entries and hard state land together or not at all. */
export interface PersistRecord {
  entries: Entry[];
  hardState?: HardState;
  /** A snapshot's metadata: the log restarts after it (its data is in a snapshot file). */
  snapshot?: Snapshot['meta'];
}

export function encodeRecord(p: PersistRecord): Buffer {
  const w = new Writer();
  w.u32(p.entries.length);
  for (const e of p.entries) writeEntry(w, e);
  w.u8(p.hardState ? 1 : 0);
  if (p.hardState) w.u48(p.hardState.term).u48(p.hardState.commit).str(p.hardState.vote ?? '');
  w.u8(p.snapshot ? 1 : 0);
  if (p.snapshot) w.str(JSON.stringify(p.snapshot));
  return w.done();
}

export function decodeRecord(b: Uint8Array): PersistRecord {
  const r = new Reader(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  const n = r.u32();
  const entries: Entry[] = [];
  for (let i = 0; i < n; i++) entries.push(readEntry(r));
  const p: PersistRecord = { entries };
  if (r.u8() === 1) {
    const term = r.u48();
    const commit = r.u48();
    const vote = r.str();
    p.hardState = { term, commit, vote: vote === '' ? null : vote };
  }
  if (r.u8() === 1) p.snapshot = JSON.parse(r.str()) as Snapshot['meta'];
  return p;
}
