import { describe, expect, it } from 'vitest';
import { decodeMessage, decodeRecord, encodeMessage, encodeRecord } from './codec.js';
import { MESSAGE_TYPES, message, type Entry, type Message, type MessageType } from './core/index.js';

const entries: Entry[] = [
  { term: 6, index: 41, type: 'normal', data: Uint8Array.from([1, 2, 3]) },
  { term: 7, index: 42, type: 'conf', data: Uint8Array.from([9]) },
  { term: 7, index: 43, type: 'normal', data: new Uint8Array(0) },
];

/** A message with every field set away from its default, so a field the codec drops shows. */
function full(type: MessageType): Message {
  return message({
    type,
    from: 'node-a',
    to: 'node-b',
    term: 7,
    logTerm: 6,
    index: 40,
    commit: 2 ** 40, // a 48-bit field
    reject: true,
    rejectHint: 39,
    context: 'ctx-é',
    entries,
    ...(type === 'MsgSnap' ? { snapshot: { meta: { index: 40, term: 6, conf: { voters: ['node-a', 'node-b'], learners: [] } }, data: Uint8Array.from([4, 5]) } } : {}),
  });
}

describe('message codec', () => {
  it.each(MESSAGE_TYPES)('round-trips %s', (type) => {
    const m = full(type);
    expect(decodeMessage(encodeMessage(m))).toEqual(m);
    const bare = message({ type, from: 'a', to: 'b', term: 1 });
    expect(decodeMessage(encodeMessage(bare))).toEqual(bare);
  });

  it('writes a type as its position in MESSAGE_TYPES, and those positions never change', () => {
    for (const [code, type] of MESSAGE_TYPES.entries()) expect(encodeMessage(full(type))[0]).toBe(code);
    // Nodes of different versions must agree on these: new types go after them.
    expect(MESSAGE_TYPES.slice(0, 13)).toEqual([
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
    ]);
  });

  it('refuses a type code past the end of the list', () => {
    const b = encodeMessage(full('MsgApp'));
    b[0] = MESSAGE_TYPES.length;
    expect(() => decodeMessage(b)).toThrow('unknown Raft message type');
  });
});

describe('WAL record codec', () => {
  it('round-trips entries, hard state and snapshot metadata, each optional', () => {
    const meta = { index: 40, term: 6, conf: { voters: ['node-a'], learners: ['node-b'] } };
    for (const r of [
      { entries },
      { entries: [], hardState: { term: 7, vote: 'node-a', commit: 42 } },
      { entries, hardState: { term: 7, vote: null, commit: 0 }, snapshot: meta },
    ]) {
      expect(decodeRecord(encodeRecord(r))).toEqual(r);
    }
  });
});
