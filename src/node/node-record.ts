import type { NodeSettings } from './settings.js';
import type { NodeRecord } from '../state/index.js';

// This node's record in the cluster (capacity, formats, labels, addresses, document author), and
// keeping it current: API and Iroh addresses change between runs, so each run registers once.

export interface NodeRecordOptions {
  self: string;
  settings: NodeSettings;
  /** The role the cluster gave this node (its membership), else the flag. */
  role: () => 'voter' | 'worker';
  addresses: () => Promise<string[]>;
  formats: string[];
  author: string;
}

export class NodeRecordSource {
  constructor(private readonly o: NodeRecordOptions) {}

  async build(api: string | null, registeredAt: string): Promise<NodeRecord> {
    const { settings } = this.o;
    return {
      nodeId: this.o.self,
      name: settings.name,
      role: this.o.role(),
      api,
      addresses: await this.o.addresses(),
      labels: settings.labels,
      capacity: { vcpus: settings.vcpus, memoryMiB: settings.memoryMiB },
      formats: this.o.formats,
      author: this.o.author,
      registeredAt,
      updatedAt: new Date().toISOString(),
    };
  }
}

export interface RegistrationOptions {
  source: NodeRecordSource;
  /** The record the cluster holds for this node now. */
  stored: () => NodeRecord | undefined;
  apiUrl: () => string;
  /** Sends the record to the leader (the service's one forwarding path). */
  register: (rec: NodeRecord) => Promise<unknown>;
}

export class Registration {
  private done = false;

  constructor(private readonly o: RegistrationOptions) {}

  /** Registers once per run, when a leader is known; a record that did not change is not sent. */
  async ensure(): Promise<void> {
    if (this.done) return;
    const prev = this.o.stored();
    const rec = await this.o.source.build(this.o.apiUrl(), prev?.registeredAt ?? new Date().toISOString());
    if (!prev || JSON.stringify({ ...prev, updatedAt: '', registeredAt: '' }) !== JSON.stringify({ ...rec, updatedAt: '', registeredAt: '' })) await this.o.register(rec);
    this.done = true;
  }
}
