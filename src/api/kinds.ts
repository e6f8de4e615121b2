import type { Kind } from '../state/index.js';
import { ApiError } from './errors.js';

// Kinds as people type them (kubectl style: singular, plural, short) and as URLs spell them.

const ALIASES: Record<string, Kind | 'Node'> = {
  vm: 'VirtualMachine',
  vms: 'VirtualMachine',
  virtualmachine: 'VirtualMachine',
  virtualmachines: 'VirtualMachine',
  image: 'Image',
  images: 'Image',
  img: 'Image',
  peer: 'Peer',
  peers: 'Peer',
  node: 'Node',
  nodes: 'Node',
  no: 'Node',
};

export function resolveKind(word: string): Kind | 'Node' | undefined {
  return ALIASES[word.toLowerCase()];
}

export const KIND_WORDS = Object.keys(ALIASES);

const PLURAL: Record<Kind, string> = { VirtualMachine: 'virtualmachines', Image: 'images', Peer: 'peers' };

export function kindPlural(kind: Kind): string {
  return PLURAL[kind];
}

export function kindFromPlural(s: string | undefined): Kind {
  for (const [k, p] of Object.entries(PLURAL)) if (p === s) return k as Kind;
  throw new ApiError('not-found', `no resource kind ${JSON.stringify(s)} (expected one of ${Object.values(PLURAL).join(', ')})`);
}
