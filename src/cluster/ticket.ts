// A join ticket: one line that carries what a new node needs to reach the cluster and prove it
// was invited. Only a hash of the secret is committed (SPEC section 3, `node ticket`).

export interface JoinTicket {
  v: 1;
  cluster: string;
  role: 'voter' | 'worker';
  secret: string;
  expiresAt: string;
  leader: { nodeId: string; addresses: string[] };
}

const PREFIX = 'bxjoin1';

export function encodeTicket(t: JoinTicket): string {
  return PREFIX + Buffer.from(JSON.stringify(t)).toString('base64url');
}

export function decodeTicket(s: string): JoinTicket {
  const text = s.trim();
  if (!text.startsWith(PREFIX)) throw new Error('not a Blixard join ticket (expected it to start with bxjoin1)');
  let t: JoinTicket;
  try {
    t = JSON.parse(Buffer.from(text.slice(PREFIX.length), 'base64url').toString('utf8')) as JoinTicket;
  } catch {
    throw new Error('the join ticket is damaged (cannot decode it)');
  }
  if (t.v !== 1 || typeof t.cluster !== 'string' || typeof t.secret !== 'string') throw new Error('the join ticket is damaged (missing fields)');
  return t;
}
