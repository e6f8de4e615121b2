import { execFileSync } from 'node:child_process';

// A small lab of network namespaces for tests that must cut a node off the network for real:
// one namespace per node, each with a veth into one bridge in the host namespace (which also
// gets an address, so tests reach every node's API). Addresses are private and local to the
// machine (10.<x>.<y>.0/24 on a bridge we create); nothing leaves it. Needs root (or sudo -n).

export interface LabNode {
  ns: string;
  ip: string;
  /** The host-side end of the node's veth: down = the node is cut off. */
  hostIf: string;
}

export interface Lab {
  bridge: string;
  hostIp: string;
  nodes: LabNode[];
  cut(node: LabNode): void;
  heal(node: LabNode): void;
  /** Runs `cmd` inside the node's namespace (a prefix for spawn). */
  exec(node: LabNode): string[];
  destroy(): void;
}

function sh(args: string[]): void {
  const root = process.getuid?.() === 0;
  execFileSync(root ? args[0]! : 'sudo', root ? args.slice(1) : ['-n', ...args], { stdio: 'pipe' });
}

export function requireNetns(): void {
  try {
    sh(['ip', 'netns', 'list']);
  } catch (e) {
    throw new Error(`this test needs network namespaces (root, or passwordless sudo, and iproute2): ${(e as Error).message}`);
  }
}

export function createLab(count: number): Lab {
  requireNetns();
  const tag = (process.pid % 10000).toString(36) + Math.floor(Math.random() * 36 ** 2).toString(36);
  const subnet = 60 + (process.pid % 150);
  const bridge = `bxbr${tag}`;
  const hostIp = `10.${subnet}.0.254`;
  const nodes: LabNode[] = [];
  const undo: string[][] = [];
  try {
    sh(['ip', 'link', 'add', bridge, 'type', 'bridge']);
    undo.push(['ip', 'link', 'del', bridge]);
    sh(['ip', 'addr', 'add', `${hostIp}/24`, 'dev', bridge]);
    sh(['ip', 'link', 'set', bridge, 'up']);
    for (let i = 0; i < count; i++) {
      const ns = `bx${tag}n${i}`;
      const hostIf = `bxh${tag}${i}`;
      const nsIf = `bxn${tag}${i}`;
      const ip = `10.${subnet}.0.${i + 1}`;
      sh(['ip', 'netns', 'add', ns]);
      undo.push(['ip', 'netns', 'del', ns]);
      sh(['ip', 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf]);
      undo.push(['ip', 'link', 'del', hostIf]);
      sh(['ip', 'link', 'set', nsIf, 'netns', ns]);
      sh(['ip', 'link', 'set', hostIf, 'master', bridge]);
      sh(['ip', 'link', 'set', hostIf, 'up']);
      sh(['ip', 'netns', 'exec', ns, 'ip', 'addr', 'add', `${ip}/24`, 'dev', nsIf]);
      sh(['ip', 'netns', 'exec', ns, 'ip', 'link', 'set', nsIf, 'up']);
      sh(['ip', 'netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
      nodes.push({ ns, ip, hostIf });
    }
  } catch (e) {
    for (const u of undo.reverse()) {
      try {
        sh(u);
      } catch {
        // already gone
      }
    }
    throw e;
  }
  const root = process.getuid?.() === 0;
  return {
    bridge,
    hostIp,
    nodes,
    cut: (n) => sh(['ip', 'link', 'set', n.hostIf, 'down']),
    heal: (n) => sh(['ip', 'link', 'set', n.hostIf, 'up']),
    exec: (n) => (root ? ['ip', 'netns', 'exec', n.ns] : ['sudo', '-n', 'ip', 'netns', 'exec', n.ns]),
    destroy: () => {
      for (const u of undo.reverse()) {
        try {
          sh(u);
        } catch {
          // already gone
        }
      }
    },
  };
}
