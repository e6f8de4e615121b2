import { withDefaults, type DesiredView, type ImageSpec, type VmSpec } from '../state/index.js';
import type { DesiredVm } from './vm-plan.js';

// The VMs the cluster placed on one node, with their images resolved: the reconciler's "desired".

export function desiredVmsFor(view: DesiredView, nodeId: string): DesiredVm[] {
  const out: DesiredVm[] = [];
  for (const r of view.list('VirtualMachine')) {
    const p = view.placement(r.metadata.name);
    // An evicted VM is no longer wanted here: this node stops it, then the leader moves it.
    if (p?.nodeId !== nodeId || p.uid !== r.metadata.uid || p.evicting) continue;
    const spec = withDefaults('VirtualMachine', r.spec) as VmSpec;
    const image = view.get('Image', spec.image);
    if (!image) continue; // the store refuses this; a lagging view may show it for a moment
    const ispec = image.spec as ImageSpec;
    const d: DesiredVm = {
      name: r.metadata.name,
      uid: r.metadata.uid,
      generation: r.metadata.generation,
      spec,
      image: { name: image.metadata.name, format: ispec.format, hash: image.source?.hash ?? null },
    };
    if (image.source?.initrdHash) d.image.initrdHash = image.source.initrdHash;
    if (ispec.readyPattern !== undefined) d.image.readyPattern = ispec.readyPattern;
    out.push(d);
  }
  return out;
}
