import type { EventJson, StatusJson } from '../api/index.js';
import { resourceKey, type Kind } from '../state/index.js';

// What happened to each resource lately (shown by `describe`), and the background errors of this
// node (shown by `status`): kept in memory, bounded, newest last.

const EVENTS_PER_RESOURCE = 20;
const ERRORS_KEPT = 50;

export class Events {
  private readonly recent = new Map<string, EventJson[]>();

  constructor(private readonly now: () => Date = () => new Date()) {}

  record(kind: Kind, name: string, type: EventJson['type'], reason: string, message: string): void {
    const key = resourceKey(kind, name);
    const list = this.recent.get(key) ?? [];
    list.push({ time: this.now().toISOString(), type, reason, message });
    while (list.length > EVENTS_PER_RESOURCE) list.shift();
    this.recent.set(key, list);
  }

  list(kind: Kind, name: string): EventJson[] {
    return this.recent.get(resourceKey(kind, name)) ?? [];
  }
}

export class BackgroundErrors {
  private readonly errors: StatusJson['errors'] = [];

  constructor(private readonly now: () => Date = () => new Date()) {}

  record(component: string, err: unknown): void {
    this.errors.push({ time: this.now().toISOString(), component, message: (err as Error)?.message ?? String(err) });
    while (this.errors.length > ERRORS_KEPT) this.errors.shift();
  }

  list(): StatusJson['errors'] {
    return [...this.errors];
  }
}
