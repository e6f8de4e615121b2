import type { Command } from 'commander';
import { ApiError } from '../api/index.js';
import { VERSION } from '../version.js';
import { connect } from './connection.js';
import { toJson } from './output.js';

// `blixard version`: this client's version and the server's, like `kubectl version`.

export default async function version(opts: { output?: string }, cmd: Command): Promise<void> {
  const client = await connect(cmd.optsWithGlobals());
  let server: Awaited<ReturnType<typeof client.version>> | null = null;
  let problem: ApiError | null = null;
  try {
    server = await client.version();
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    problem = e;
  } finally {
    client.close();
  }
  if (opts.output === 'json') {
    // state/ is loaded for -o json only: a plain `version` does not need it.
    const { API_VERSION } = await import('../state/index.js');
    process.stdout.write(toJson({ client: { version: VERSION, apiVersion: API_VERSION }, server }));
  } else {
    process.stdout.write(`Client Version: ${VERSION}\n`);
    if (server) process.stdout.write(`Server Version: ${server.version} (node ${server.nodeId})\n`);
  }
  if (problem) throw problem;
}
