import { describe, expect, it } from 'vitest';
import type { DocEvent } from './doc.js';
import { Refresher, type DirtyKey } from './refresher.js';

// What a view is asked to read after a burst of events: each key once, with the newest entry an
// event described per author, or a lookup when one event could not say.

const insert = (key: string, author: string, ts: number, extra: Partial<Extract<DocEvent, { type: 'insert' }>> = {}): DocEvent => ({
  type: 'insert',
  key,
  author,
  remote: true,
  contentReady: true,
  hash: `h${ts}`,
  timestamp: BigInt(ts),
  len: 10n,
  ...extra,
});

async function drained(events: DocEvent[]): Promise<DirtyKey[]> {
  const reads: DirtyKey[] = [];
  const r = new Refresher(async (keys) => void reads.push(...(keys ?? [])), (e) => {
    throw e;
  });
  for (const e of events) r.event(e);
  await r.idle();
  return reads;
}

describe('Refresher', () => {
  it('keeps the newest entry an event described per key and author, whatever order they came in', async () => {
    const [k] = await drained([insert('k', 'a', 2), insert('k', 'a', 5), insert('k', 'a', 3), insert('k', 'b', 1)]);
    expect(k!.authors).toEqual(['a', 'b']);
    expect(k!.hints?.get('a')).toEqual({ hash: 'h5', timestamp: 5n, len: 10n });
    expect(k!.hints?.get('b')?.hash).toBe('h1');
  });

  it('looks the entry up when one event did not describe it', async () => {
    const [k] = await drained([insert('k', 'a', 2), insert('k', 'a', 9, { hash: undefined })]);
    expect(k!.authors).toEqual(['a']);
    expect(k!.hints?.get('a')).toBeUndefined();
  });

  it('reads an entry whose content came later with the entry its insert described', async () => {
    const [k] = await drained([insert('k', 'a', 4, { contentReady: false }), { type: 'content-ready', hash: 'h4' }]);
    expect(k!.hints?.get('a')).toEqual({ hash: 'h4', timestamp: 4n, len: 10n });
  });
});
