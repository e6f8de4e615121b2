import type { Command } from 'commander';
import { formatBytes } from '../state/index.js';
import { connect } from './connection.js';
import { outputFormat, paint, table, terminal, toJson, toYaml } from './output.js';

// `blixard status`: the cluster at a glance, or its SPEC section 3 JSON with -o json.

export default async function status(opts: { output?: string }, cmd: Command): Promise<void> {
  const format = outputFormat(opts.output, ['table', 'json', 'yaml']);
  const out = terminal();
  const client = await connect(cmd.optsWithGlobals());
  try {
    const s = await client.status();
    if (format === 'json') return void out.write(toJson(s));
    if (format === 'yaml') return void out.write(toYaml(s));
    let text = '';
    text += `Node:      ${s.name} (${s.nodeId})\n`;
    text += `Cluster:   ${s.clusterId ?? '<none: not bootstrapped or admitted>'}\n`;
    text += `Raft:      ${s.raft.role}, term ${s.raft.term}, leader ${s.raft.leader ? s.raft.leader.slice(0, 10) : '<none>'}, commit ${s.raft.commitIndex}, applied ${s.raft.appliedIndex}\n`;
    text += `VMs:       ${s.vms.total} total, ${s.vms.running} running\n`;
    text += `Images:    ${s.images.total}\n`;
    text += `Drift:     ${s.drift ? paint(out, 'yellow', `${s.drift} (see \`blixard diff --actual\`)`) : 'none'}\n`;
    for (const a of s.applysets) text += `Applied:   applyset ${a.name} at index ${a.index} (${a.time})${a.revision ? `, revision ${a.revision}` : ''}\n`;
    text += '\nMembers:\n' + table(['NAME', 'NODE-ID', 'ROLE', 'API'], s.raft.members.map((m) => [m.name, m.nodeId.slice(0, 10), m.role, m.api ?? '']));
    text += '\nNodes:\n' + table(['NAME', 'ROLE', 'READY', 'CAPACITY', 'ALLOCATED'], s.nodes.map((n) => [n.name, n.role, n.ready ? 'True' : 'False', `${n.capacity.vcpus} vcpu, ${n.capacity.memoryMiB}Mi`, `${n.allocated.vcpus} vcpu, ${n.allocated.memoryMiB}Mi`]));
    if (s.peers.length) {
      text += '\nPeers (from this node):\n' + table(['NAME', 'CONNECTED', 'RTT', 'LAST SEEN', 'LAST ERROR'], s.peers.map((p) => [p.name, p.connected ? 'True' : 'False', p.rttMs === null ? '<none>' : `${p.rttMs}ms`, p.lastSeen ?? '<never>', p.lastError ?? '']));
    }
    if (s.transfers.length) {
      const pct = (t: (typeof s.transfers)[number]) => (t.total ? `${Math.floor((100 * t.bytes) / t.total)}%` : '');
      text += '\nImage transfers (to this node):\n' + table(['IMAGE', 'FOR', 'PHASE', 'PROGRESS', 'PIECES', 'FROM'], s.transfers.map((t) => [t.hash.slice(0, 19) + '..', t.vms.join(',') || '(cache)', t.phase, `${formatBytes(t.bytes)}${t.total ? ` of ${formatBytes(t.total)} ${pct(t)}` : ''}`, `${t.pieces}/${t.piecesTotal ?? '?'}`, Object.keys(t.fromPeers).map((id) => id.slice(0, 10)).join(',')]));
    }
    for (const n of s.notes) text += `\n${paint(out, 'yellow', 'note:')} ${n}`;
    if (s.notes.length) text += '\n';
    if (s.errors.length) {
      text += '\nBackground errors:\n' + table(['TIME', 'COMPONENT', 'MESSAGE'], s.errors.map((e) => [e.time, e.component, e.message]));
    }
    out.write(text);
  } finally {
    client.close();
  }
}
