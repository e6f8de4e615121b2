import type { DocEvent, ReplicatedDoc } from '../p2p/index.js';

// A document and the view that follows it: Iroh delivers events from the moment a document is
// opened or joined, before its view can exist, so those events are kept and handed to the view
// once it is made. (The caller loads the view; the daemon loads its two at once.)

export interface DocumentView {
  event(e: DocEvent): void;
}

export async function follow<V extends DocumentView>(open: (onEvent: (e: DocEvent) => void) => Promise<ReplicatedDoc>, viewOf: (doc: ReplicatedDoc) => V): Promise<{ doc: ReplicatedDoc; view: V }> {
  let view: V | undefined;
  const early: DocEvent[] = [];
  const doc = await open((e) => (view ? view.event(e) : early.push(e)));
  view = viewOf(doc);
  for (const e of early) view.event(e);
  return { doc, view };
}
