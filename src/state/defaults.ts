import type { ImageSpec, Kind, PeerSpec, Spec, VmSpec } from './types.js';

// SPEC section 2: the store keeps specs as written, and both sides of every comparison get these
// defaults first, so leaving a default out (or writing it out) never shows as a difference.
export const VM_DEFAULTS = {
  vcpus: 1,
  memoryMiB: 256,
  state: 'Running',
  restartPolicy: 'Always',
  ports: [],
} as const;

export const PEER_DEFAULTS = {
  role: 'worker',
  addresses: [],
} as const;

/** A copy of `spec` with every default filled in, keys in a stable order. */
export function withDefaults(kind: Kind, spec: Spec): Spec {
  switch (kind) {
    case 'VirtualMachine': {
      const s = spec as VmSpec;
      const out: VmSpec = {
        image: s.image,
        vcpus: s.vcpus ?? VM_DEFAULTS.vcpus,
        memoryMiB: s.memoryMiB ?? VM_DEFAULTS.memoryMiB,
        state: s.state ?? VM_DEFAULTS.state,
        restartPolicy: s.restartPolicy ?? VM_DEFAULTS.restartPolicy,
        ports: (s.ports ?? []).map((p) => ({ host: p.host, guest: p.guest, protocol: p.protocol ?? 'tcp' })),
      };
      if (s.kernelArgs !== undefined) out.kernelArgs = s.kernelArgs;
      const sel = s.placement?.nodeSelector;
      const spread = s.placement?.spreadBy;
      if ((sel && Object.keys(sel).length > 0) || spread !== undefined) {
        out.placement = {};
        if (sel && Object.keys(sel).length > 0) out.placement.nodeSelector = sortKeys(sel);
        if (spread !== undefined) out.placement.spreadBy = spread;
      }
      return out;
    }
    case 'Image': {
      const s = spec as ImageSpec;
      const out: ImageSpec = { format: s.format };
      for (const k of ['path', 'blob', 'initrd', 'hash', 'readyPattern'] as const) {
        if (s[k] !== undefined) out[k] = s[k];
      }
      return out;
    }
    case 'Peer': {
      const s = spec as PeerSpec;
      const out: PeerSpec = {
        nodeId: s.nodeId,
        addresses: [...(s.addresses ?? PEER_DEFAULTS.addresses)],
        role: s.role ?? PEER_DEFAULTS.role,
      };
      if (s.capacity && Object.keys(s.capacity).length > 0) out.capacity = { ...s.capacity };
      return out;
    }
  }
}

export function sortKeys<T>(m: Record<string, T>): Record<string, T> {
  const out: Record<string, T> = {};
  for (const k of Object.keys(m).sort()) out[k] = m[k] as T;
  return out;
}
