import type { Command } from 'commander';
import { resolveKind } from '../api/index.js';
import { connect } from './connection.js';
import { UsageError } from './output.js';

// `blixard logs vm NAME [-f] [--tail N]`: the VM's console (QEMU serial, process stdout/stderr).

export default async function logs(kindWord: string, name: string, opts: { follow?: boolean; tail?: string }, cmd: Command): Promise<void> {
  if (resolveKind(kindWord) !== 'VirtualMachine') throw new UsageError(`logs: expected the kind vm, got ${JSON.stringify(kindWord)}`);
  let tailLines: number | undefined;
  if (opts.tail !== undefined) {
    tailLines = Number(opts.tail);
    if (!Number.isInteger(tailLines) || tailLines < 0) throw new UsageError(`--tail: expected a whole number of lines, got ${JSON.stringify(opts.tail)}`);
  }
  const client = await connect(cmd.optsWithGlobals());
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  try {
    await client.logs(name, { ...(tailLines !== undefined ? { tailLines } : {}), follow: !!opts.follow, signal: stop.signal, onData: (c) => process.stdout.write(c) });
  } finally {
    client.close();
  }
}
