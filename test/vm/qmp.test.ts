import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QmpClient, QmpError, withQmp } from '../../src/vm/index.js';
import { removeRoot, tempRoot } from './support.js';

// The QMP client against a scripted server that speaks the protocol the way QEMU does:
// greeting first, capabilities negotiation, answers carrying the request id, events between.

type Reply = (msg: Record<string, unknown>) => void;
type Handler = (cmd: string, args: unknown, id: unknown, send: Reply) => void;

const GREETING = { QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: 'fake' }, capabilities: ['oob'] } };

async function fakeQmp(socketPath: string, handler: Handler, opts: { greet?: boolean } = {}): Promise<net.Server> {
  const server = net.createServer((sock) => {
    clients.get(server)?.push(sock);
    const send: Reply = (m) => sock.write(`${JSON.stringify(m)}\r\n`);
    if (opts.greet !== false) send(GREETING);
    let buf = '';
    let negotiated = false;
    sock.on('data', (d) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const msg = JSON.parse(buf.slice(0, nl)) as { execute: string; arguments?: unknown; id?: unknown };
        buf = buf.slice(nl + 1);
        if (msg.execute === 'qmp_capabilities') {
          negotiated = true;
          send({ return: {}, id: msg.id });
        } else if (!negotiated) send({ error: { class: 'CommandNotFound', desc: 'Expecting capabilities negotiation with qmp_capabilities' }, id: msg.id });
        else handler(msg.execute, msg.arguments, msg.id, send);
      }
    });
    sock.on('error', () => {});
  });
  clients.set(server, []);
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return server;
}

/** The server's accepted connections (to cut them, as a QEMU that exits does). */
const clients = new WeakMap<net.Server, net.Socket[]>();

function close(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

let dir: string;
beforeAll(async () => {
  dir = await tempRoot('blixard-qmp-');
});
afterAll(async () => {
  await removeRoot(dir);
});

describe('QMP client', () => {
  it('negotiates capabilities, then matches answers to requests by id, even out of order', async () => {
    const sock = path.join(dir, 'a.sock');
    const held: { id: unknown; send: Reply }[] = [];
    const server = await fakeQmp(sock, (cmd, _args, id, send) => {
      if (cmd === 'slow') held.push({ id, send });
      else if (cmd === 'query-status') send({ return: { running: true, singlestep: false, status: 'running' }, id });
      else if (cmd === 'echo') send({ return: _args, id });
    });
    try {
      const { client, greeting } = await QmpClient.connect(sock);
      expect(greeting.version.qemu.major).toBe(7);
      const slow = client.execute('slow');
      const fast = await client.execute('echo', { a: 1 });
      expect(fast).toEqual({ a: 1 });
      await new Promise((r) => setTimeout(r, 20));
      held[0]!.send({ return: 'late', id: held[0]!.id });
      expect(await slow).toBe('late');
      expect(await client.queryStatus()).toEqual({ running: true, status: 'running' });
      client.close();
      await client.closed;
    } finally {
      await close(server);
    }
  });

  it('turns error answers into QmpError with class and description', async () => {
    const sock = path.join(dir, 'b.sock');
    const server = await fakeQmp(sock, (cmd, _a, id, send) => send({ error: { class: 'GenericError', desc: `no ${cmd} here` }, id }));
    try {
      const err = await withQmp(sock, (c) => c.execute('system_powerdown')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(QmpError);
      expect((err as QmpError).errorClass).toBe('GenericError');
      expect((err as QmpError).message).toBe('QMP system_powerdown: GenericError: no system_powerdown here');
    } finally {
      await close(server);
    }
  });

  it('delivers events between answers', async () => {
    const sock = path.join(dir, 'c.sock');
    const server = await fakeQmp(sock, (cmd, _a, id, send) => {
      send({ event: 'POWERDOWN', data: {}, timestamp: { seconds: 1, microseconds: 2 } });
      send({ return: {}, id });
      setTimeout(() => send({ event: 'SHUTDOWN', data: { guest: true, reason: 'guest-shutdown' }, timestamp: { seconds: 3, microseconds: 4 } }), 30);
    });
    try {
      await withQmp(sock, async (c) => {
        const seen: string[] = [];
        c.onEvent((e) => seen.push(e.event));
        const shutdown = c.waitForEvent('SHUTDOWN', 2000);
        await c.execute('system_powerdown');
        const e = await shutdown;
        expect(e.data).toEqual({ guest: true, reason: 'guest-shutdown' });
        expect(seen).toEqual(['POWERDOWN', 'SHUTDOWN']);
      });
    } finally {
      await close(server);
    }
  });

  it('times out: a server that never greets (another client holds QEMU), a command never answered, a missing socket', async () => {
    const mute = path.join(dir, 'd.sock');
    const server = await fakeQmp(mute, () => {}, { greet: false });
    const talker = path.join(dir, 'e.sock');
    const server2 = await fakeQmp(talker, () => {});
    try {
      const t0 = Date.now();
      await expect(QmpClient.connect(mute, { timeoutMs: 200 })).rejects.toThrow(/no greeting within 200 ms/);
      expect(Date.now() - t0).toBeLessThan(2000);
      await expect(withQmp(talker, (c) => c.execute('query-status', undefined, { timeoutMs: 150 }))).rejects.toThrow('QMP query-status: no answer within 150 ms');
      await expect(QmpClient.connect(path.join(dir, 'nothing.sock'))).rejects.toThrow(/QMP connect .*nothing\.sock: .*ENOENT/);
    } finally {
      await close(server);
      await close(server2);
    }
  });

  it('rejects pending commands when QEMU goes away (e.g. after quit)', async () => {
    const sock = path.join(dir, 'f.sock');
    const server = await fakeQmp(sock, () => {});
    try {
      const { client } = await QmpClient.connect(sock);
      const pending = client.execute('quit', undefined, { timeoutMs: 5000 });
      for (const c of clients.get(server) ?? []) c.destroy();
      await expect(pending).rejects.toThrow(/^QMP connection to .*f\.sock (closed|lost)/);
      await client.closed;
    } finally {
      await close(server);
    }
  });

  it('reaches a socket whose path is longer than sun_path allows', async () => {
    const deep = path.join(dir, 'x'.repeat(100), 'vm-with-a-long-name');
    await mkdir(deep, { recursive: true });
    const sock = path.join(deep, 'qmp.sock');
    expect(Buffer.byteLength(sock)).toBeGreaterThan(107);
    // The fake server binds by a relative name, as QEMU does in the VM folder.
    const cwd = process.cwd();
    process.chdir(deep);
    let server: net.Server;
    try {
      server = await fakeQmp('qmp.sock', (_c, _a, id, send) => send({ return: { running: true, status: 'running' }, id }));
    } finally {
      process.chdir(cwd);
    }
    try {
      expect(await withQmp(sock, (c) => c.queryStatus())).toEqual({ running: true, status: 'running' });
    } finally {
      await close(server);
    }
  });
});
