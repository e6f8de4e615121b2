import { every, type Runnable } from '../lifecycle/index.js';
import type { NodeDocs } from './node-docs.js';
import type { StatusView } from './status-doc.js';

// Every node heartbeats into the status document: how the others know it is up (cluster/liveness).

export interface HeartbeatValue {
  time: string;
  name: string;
  role: string;
  formats: string[];
  capacity: { vcpus: number; memoryMiB: number };
}

/** Often enough that --node-timeout sees several: a quarter of it, between 250 ms and 2 s. */
export function heartbeatEveryMs(nodeTimeoutMs: number): number {
  return Math.min(2_000, Math.max(250, nodeTimeoutMs / 4));
}

export function heartbeat(o: { docs: () => NodeDocs | undefined; value: () => Omit<HeartbeatValue, 'time'>; everyMs: number; onError: (err: unknown) => void }): Runnable {
  return every('heartbeat', o.everyMs, () => {
    const docs = o.docs();
    if (docs) docs.writer.set('node', { time: new Date().toISOString(), ...o.value() }).catch(o.onError);
  });
}

/** Every node's latest heartbeat as this node's replica holds it. */
export function heartbeatsIn(view: StatusView | undefined): { nodeId: string; time: string }[] {
  if (!view) return [];
  const out: { nodeId: string; time: string }[] = [];
  for (const id of view.nodes()) {
    const hb = view.get<{ time: string }>(id, 'node');
    if (hb && typeof hb.time === 'string') out.push({ nodeId: id, time: hb.time });
  }
  return out;
}
