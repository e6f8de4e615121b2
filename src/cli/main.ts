import { Command, CommanderError, Option } from 'commander';
import { ExitStatus, UsageError } from './exit.js';

// The `blixard` program. Commands are declared here (cheap) and loaded only when run, so a
// one-shot command such as `apply` pays for its own code, not for the daemon's (changesets' way).
// One catch maps every error class to the exit codes of SPEC section 3.

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function program(): Command {
  const p = new Command('blixard')
    .description('Declarative, GitOps-style orchestrator for microVMs on a peer-to-peer cluster')
    .option('--server <url>', 'node API address (env BLIXARD_SERVER)')
    .option('--token <token>', 'API bearer token (env BLIXARD_TOKEN)')
    .option('--data-dir <dir>', "a local node's data dir: its token and API (env BLIXARD_DATA_DIR)")
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  const node = p.command('node').description('run and manage a node daemon');
  node
    .command('start')
    .description('run a node daemon in the foreground (logs on stderr)')
    .option('--name <name>', 'node name (default: host name)')
    .option('--api <host:port>', 'HTTP API address (default 127.0.0.1:7400)')
    .option('--listen <host:port>', 'Iroh QUIC socket (default 127.0.0.1, port chosen by the OS)')
    .option('--bootstrap', 'create a new cluster with this node as its first voter')
    .option('--join <ticket>', 'join a cluster with a ticket from `blixard node ticket`')
    .addOption(new Option('--role <role>', 'voter or worker').choices(['voter', 'worker']))
    .option('--hypervisor <drivers>', 'auto, qemu, process or qemu,process')
    .option('--labels <k=v,...>', 'node labels for placement')
    .option('--vcpus <n>', 'vCPUs this node offers (default: all)')
    .option('--memory-mib <m>', 'memory this node offers in MiB (default: all)')
    .addOption(new Option('--prefetch <mode>', 'which images to prefetch').choices(['assigned', 'all']))
    .option('--max-transfer-rate <rate>', 'limit image transfers, e.g. 50MB/s')
    .option('--image-cache-size <size>', 'image cache limit, e.g. 20GB')
    .option('--node-timeout <duration>', 'a silent node is NotReady after this (default 10s)')
    .option('--fence-after <duration>', 'a cut-off node stops its VMs after this (default 20s)')
    .addOption(new Option('--discovery <mode>', 'none or iroh').choices(['none', 'iroh']))
    .addOption(new Option('--p2p <mode>', 'on, or off for a node on its own (no peers, no tickets)').choices(['on', 'off']))
    .action(lazy('./node-start.js'));
  for (const action of ['cordon', 'uncordon', 'drain'] as const) {
    const c = node
      .command(action)
      .description(action === 'cordon' ? 'place no new VMs on the node' : action === 'uncordon' ? 'let the scheduler use the node again' : 'cordon the node and move its VMs elsewhere')
      .argument('<name>', 'node name or id');
    if (action === 'drain') c.option('--wait', 'wait until no VM is left on the node').option('--timeout <duration>', 'how long --wait waits', '120s');
    c.action((name: string, opts: object, cmd: Command) => lazy('./node-cordon.js')(action, name, opts, cmd));
  }
  node.command('id').description("print this data dir's node id (creating the identity if new)").action(lazy('./node-id.js'));
  node
    .command('ticket')
    .description('print a join ticket for a new node')
    .addOption(new Option('--role <role>', 'role of the joining node').choices(['voter', 'worker']).default('worker'))
    .option('--ttl <duration>', 'how long the ticket is valid', '24h')
    .action(lazy('./node-ticket.js'));

  p.command('up')
    .description('run an embedded single-node cluster and apply a folder of manifests (default examples/)')
    .option('-f, --filename <dir>', 'folder of manifests to apply', 'examples')
    .option('--api <host:port>', 'HTTP API address (default 127.0.0.1:7400, or a free port if taken)')
    .action(lazy('./up.js'));

  p.command('validate')
    .description('parse and validate manifests (no server needed)')
    .requiredOption('-f, --filename <path>', 'file, folder or - for stdin (repeatable)', collect)
    .option('-R, --recursive', 'descend into subfolders')
    .action(lazy('./validate.js'));

  p.command('schema').description('print the JSON Schema of all manifest kinds (for editors)').action(lazy('./schema.js'));

  p.command('apply')
    .description('apply manifests atomically: all of the set, or none of it')
    .option('-f, --filename <path>', 'file, folder or - for stdin (repeatable)', collect)
    .option('-R, --recursive', 'descend into subfolders')
    .option('--plan <file>', 'apply exactly a plan saved by `diff --out`')
    .option('--prune', "delete what this applyset's last apply created and the set no longer has")
    .option('--max-prune <n>', 'refuse to prune more than this many resources', '10')
    .option('--applyset <name>', 'the inventory --prune works on', 'default')
    .option('--dry-run', 'show what would happen, change nothing')
    .option('--wait', "wait until every VM of the set reaches its spec.state")
    .option('--timeout <duration>', 'how long --wait waits', '60s')
    .option('-o, --output <format>', 'json')
    .action(lazy('./apply.js'));

  p.command('diff')
    .description('desired (files) against stored, each change labelled with its effect on a running VM')
    .option('-f, --filename <path>', 'file, folder or - for stdin (repeatable)', collect)
    .option('-R, --recursive', 'descend into subfolders')
    .option('--prune', 'also show what --prune would delete')
    .option('--applyset <name>', 'the inventory --prune works on', 'default')
    .option('--out <file>', 'save the plan, for `apply --plan FILE`')
    .option('--actual', 'stored against observed state (drift)')
    .option('-o, --output <format>', 'json-patch')
    .action(lazy('./diff.js'));

  p.command('get')
    .description('list resources, or show one')
    .argument('<kind>', 'vm, image, peer or node (singular, plural or short)')
    .argument('[name]')
    .option('-o, --output <format>', 'json, yaml, name or wide')
    .option('-l, --selector <selector>', 'only resources whose labels match (app=web, tier!=db, tier in (a,b), !canary)')
    .option('-w, --watch', 'after listing, print every change as it happens until interrupted')
    .action(lazy('./get.js'));

  p.command('describe')
    .description('show a resource with its conditions and recent events')
    .argument('<kind>')
    .argument('<name>')
    .action(lazy('./describe.js'));

  p.command('delete')
    .description('delete resources named in files, or one by kind and name')
    .argument('[kind]')
    .argument('[name]')
    .option('-f, --filename <path>', 'file, folder or - for stdin (repeatable)', collect)
    .option('-R, --recursive', 'descend into subfolders')
    .action(lazy('./delete.js'));

  p.command('watch')
    .description('re-apply a folder on every change (GitOps): a bad edit is reported and changes nothing')
    .requiredOption('-f, --filename <dir>', 'the folder of manifests (read recursively)')
    .option('--prune', "delete what this applyset's last apply created and the folder no longer has")
    .option('--max-prune <n>', 'refuse to prune more than this many resources', '10')
    .option('--applyset <name>', 'the inventory --prune works on', 'watch')
    .option('--debounce <duration>', 'quiet time after a change before applying', '500ms')
    .option('--git', 'pull the checkout on an interval and record the applied commit')
    .option('--interval <duration>', 'how often --git pulls', '30s')
    .action(lazy('./watch.js'));

  p.command('logs')
    .description("a VM's console (QEMU serial, process stdout/stderr), from its node")
    .argument('<kind>', 'vm')
    .argument('<name>')
    .option('-f, --follow', 'keep printing new output')
    .option('--tail <lines>', 'only the last N lines')
    .action(lazy('./logs.js'));

  const image = p.command('image').description('images: put a file into the cluster, list what it holds');
  image
    .command('push')
    .description('upload a file and create or update an Image of it')
    .argument('<file>')
    .requiredOption('--name <name>', 'the Image name')
    .option('--format <format>', 'kernel, raw, qcow2 or executable (default: from the file)')
    .option('--ready-pattern <regex>', "the VM is Running once its console prints a line matching this")
    .option('-o, --output <format>', 'json')
    .action((file: string, opts: object, cmd: Command) => lazyNamed('./image.js', 'push')(file, opts, cmd));
  image
    .command('ls')
    .description('images with their hash, size and the nodes that hold them')
    .option('-o, --output <format>', 'json, yaml or wide')
    .action((opts: object, cmd: Command) => lazyNamed('./image.js', 'ls')(opts, cmd));

  p.command('status')
    .description('members, leader, nodes, VMs and background errors')
    .option('-o, --output <format>', 'json or yaml')
    .action(lazy('./status.js'));

  p.command('version')
    .description('client and server versions')
    .option('-o, --output <format>', 'json')
    .action(lazy('./version.js'));

  return p;
}

type Handler = (...args: unknown[]) => Promise<void>;

/** Loads a command module when it runs; its default export gets (args..., opts, command). */
function lazyNamed(modulePath: string, name: string): Handler {
  return async (...args: unknown[]) => {
    const mod = (await import(modulePath)) as Record<string, (...a: unknown[]) => Promise<void>>;
    await mod[name]!(...args);
  };
}

function lazy(modulePath: string): Handler {
  return async (...args: unknown[]) => {
    const mod = (await import(modulePath)) as { default: (...a: unknown[]) => Promise<void> };
    await mod.default(...args);
  };
}

export async function main(argv: string[]): Promise<number> {
  // The yaml parser reads process.env.LOG_TOKENS once per token; process.env is a C++-backed
  // object that costs about a microsecond per read, which is a fifth of the time to parse a folder
  // of 10,000 manifests. A plain copy reads the same values (native code still sees the real
  // environment, and child processes get this copy).
  process.env = { ...process.env };
  const p = program();
  try {
    await p.parseAsync(argv);
    return 0;
  } catch (e) {
    return await exitCodeOf(e);
  }
}

/** The exit code for what a command threw (SPEC section 3), after saying why on stderr. */
export async function exitCodeOf(e: unknown): Promise<number> {
  const say = (s: string) => process.stderr.write(s.endsWith('\n') ? s : s + '\n');
  if (e instanceof CommanderError) {
    // Commander printed its own message; help and version are not errors.
    return e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help' ? 0 : 2;
  }
  if (e instanceof ExitStatus) {
    if (e.message) say(e.message);
    return e.code;
  }
  if (e instanceof UsageError) {
    say(`error: ${e.message}`);
    return 2;
  }
  // The API's and the manifests' errors are matched by class, their folders imported only now:
  // at start they would slow every command, even --help. A command that threw one of them has
  // loaded its folder already, so the import costs nothing then.
  const { ApiError } = await import('../api/index.js');
  if (e instanceof ApiError) {
    say(`error: ${e.message}`);
    return e.exitCode;
  }
  const { ManifestSetError } = await import('../manifest/index.js');
  if (e instanceof ManifestSetError) {
    const n = e.errors.length;
    say(e.message);
    say(`error: ${n} problem${n === 1 ? '' : 's'} in the manifests; nothing was applied`);
    return 2;
  }
  const err = e as Error & { exitCode?: number };
  say(`error: ${err?.message ?? String(e)}`);
  if (process.env.BLIXARD_DEBUG && err?.stack) say(err.stack);
  return typeof err?.exitCode === 'number' ? err.exitCode : 1;
}
