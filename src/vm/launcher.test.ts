import { execFileSync } from 'node:child_process';
import { open, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Launcher } from './launcher.js';
import { until } from '../../test/helpers/until.js';

// The launcher: programs exec'd from a fork of one long-lived Perl, and Perl scripts (the shim)
// run in the fork itself, as `perl SCRIPT ARGS` would run them.

let dir: string;
const launcher = new Launcher('perl');
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'blixard-launcher-'));
});
afterAll(async () => {
  launcher.close();
  await rm(dir, { recursive: true, force: true });
});

const WAIT_MS = 10_000;
const POLL_MS = 20;

const output = (name: string) => readFile(path.join(dir, name), 'utf8').catch(() => '');

describe('Launcher', () => {
  it('runs a Perl script in its own fork, with the arguments, environment, folder and output asked for', async () => {
    await writeFile(path.join(dir, 'hello.pl'), 'use strict;\nopen(my $fh, "<", "/proc/$$/cmdline"); my $c = <$fh>; $c =~ s/\\0/ /g;\nprint "args=@ARGV env=$ENV{GREETING} cwd=", (-e "hello.pl" ? "ok" : "wrong"), " pid=$$ cmd=$c\\n";\nexit 3;\n');
    const pid = await launcher.launch({ cwd: dir, output: path.join(dir, 'hello.out'), argv: ['hello.pl', 'a', 'b c'], env: { GREETING: 'hi', PATH: '/usr/bin:/bin' }, perlScript: true });
    const out = await until('the script to print', async () => ((await output('hello.out')).includes('\n') ? output('hello.out') : undefined), WAIT_MS, POLL_MS);
    expect(out).toContain('args=a b c env=hi cwd=ok');
    expect(out).toContain(`pid=${pid} `);
    expect(out).toMatch(/cmd=perl hello\.pl a b c/); // what `ps` shows: as if started by hand
  });

  it('says why when the script cannot be read, and puts what a dying script says in its output', async () => {
    await expect(launcher.launch({ cwd: dir, output: path.join(dir, 'missing.out'), argv: ['missing.pl'], env: {}, perlScript: true })).rejects.toThrow(/cannot read missing\.pl/);
    await expect(launcher.launch({ cwd: path.join(dir, 'gone'), output: path.join(dir, 'x.out'), argv: ['x.pl'], env: {}, perlScript: true })).rejects.toThrow(/chdir .*gone/);
    await writeFile(path.join(dir, 'dies.pl'), 'use strict;\ndie "blixard-shim: nothing to do\\n";\n');
    await launcher.launch({ cwd: dir, output: path.join(dir, 'dies.out'), argv: ['dies.pl'], env: {}, perlScript: true });
    expect(await until('the message', async () => ((await output('dies.out')) || undefined), WAIT_MS, POLL_MS)).toBe('blixard-shim: nothing to do\n');
  });

  it('runs a defined script compiled once, from no file, and says why one does not compile', async () => {
    const script = path.join(dir, 'defined', 'greet.pl'); // no such file: the definition is what runs
    launcher.define(script, 'use strict;\nmy $n = 0;\nsub twice { return 2 * $_[0] }\nprint "defined args=@ARGV twice=", twice(21), " file=", (-e $0 ? "yes" : "no"), "\\n";\n');
    await launcher.launch({ cwd: dir, output: path.join(dir, 'greet.out'), argv: [script, 'x', 'y'], env: {}, perlScript: true });
    expect(await until('the defined script', async () => ((await output('greet.out')) || undefined), WAIT_MS, POLL_MS)).toBe('defined args=x y twice=42 file=no\n');

    // A path is a name, never code: a newline in it does not end the compiled line.
    const odd = path.join(dir, 'odd\n"print "injected\\n";\n#.pl');
    launcher.define(odd, 'print "odd ran\\n";\n');
    await launcher.launch({ cwd: dir, output: path.join(dir, 'odd.out'), argv: [odd], env: {}, perlScript: true });
    expect(await until('the odd one', async () => ((await output('odd.out')) || undefined), WAIT_MS, POLL_MS)).toBe('odd ran\n');

    launcher.define(path.join(dir, 'broken.pl'), 'use strict;\nprint $undeclared;\n');
    await expect(launcher.launch({ cwd: dir, output: path.join(dir, 'broken.out'), argv: [path.join(dir, 'broken.pl')], env: {}, perlScript: true })).rejects.toThrow(/compiling .*broken\.pl: Global symbol "\$undeclared"/);
    // A named sub using a file-level `my`: it would see the first child's copy only.
    launcher.define(path.join(dir, 'shares.pl'), 'use strict;\nmy $count = 0;\nsub bump { $count++ }\nbump();\n');
    await expect(launcher.launch({ cwd: dir, output: path.join(dir, 'shares.out'), argv: [path.join(dir, 'shares.pl')], env: {}, perlScript: true })).rejects.toThrow(/Variable "\$count" is not available/);
  });

  it('defines the scripts again in a launcher that replaces one that died', async () => {
    const own = new Launcher('perl');
    try {
      const script = path.join(dir, 'again.pl');
      own.define(script, 'print "run $ARGV[0]\\n";\n');
      await own.launch({ cwd: dir, output: path.join(dir, 'again.out'), argv: [script, '1'], env: {}, perlScript: true });
      const first = (own as unknown as { proc: { pid: number } }).proc.pid;
      process.kill(first, 'SIGKILL');
      await until('the launcher to be gone', async () => ((own as unknown as { proc?: unknown }).proc === undefined ? true : undefined), WAIT_MS, POLL_MS);
      await own.launch({ cwd: dir, output: path.join(dir, 'again.out'), argv: [script, '2'], env: {}, perlScript: true });
      expect((own as unknown as { proc: { pid: number } }).proc.pid).not.toBe(first);
      expect(await until('both runs', async () => ((await output('again.out')).split('\n').length > 2 ? output('again.out') : undefined), WAIT_MS, POLL_MS)).toBe('run 1\nrun 2\n');
    } finally {
      own.close();
    }
  });

  it('does not hold later launches up behind one whose child is slow to get going', async () => {
    // Opening a FIFO for writing blocks until someone reads it: this child waits at its output
    // until the test opens the other end. A launcher that waited for each child in turn (as it
    // once did) would answer nothing else meanwhile.
    const fifo = path.join(dir, 'slow.fifo');
    execFileSync('mkfifo', [fifo]);
    let slowDone = false;
    const slow = launcher.launch({ cwd: dir, output: fifo, argv: ['/bin/echo', 'slow'], env: {} }).then((pid) => ((slowDone = true), pid));
    const quick = await Promise.all([1, 2, 3].map((i) => launcher.launch({ cwd: dir, output: path.join(dir, `quick${i}.out`), argv: ['/bin/echo', `quick ${i}`], env: {} })));
    expect(quick.every((pid) => pid > 0)).toBe(true);
    expect(slowDone).toBe(false);
    const reader = await open(fifo, 'r'); // lets the slow child open its output and exec
    try {
      expect(await slow).toBeGreaterThan(0);
      expect(await until('the slow one to print', async () => ((await reader.read(Buffer.alloc(64), 0, 64)).bytesRead > 0 ? true : undefined), WAIT_MS, POLL_MS)).toBe(true);
    } finally {
      await reader.close();
    }
  });

  it('still execs programs, and says why one cannot be run', async () => {
    await launcher.launch({ cwd: dir, output: path.join(dir, 'echo.out'), argv: ['/bin/echo', 'exec works'], env: {} });
    expect(await until('echo', async () => ((await output('echo.out')) || undefined), WAIT_MS, POLL_MS)).toBe('exec works\n');
    await expect(launcher.launch({ cwd: dir, output: path.join(dir, 'nope.out'), argv: ['/nonexistent/prog'], env: {} })).rejects.toThrow(/exec \/nonexistent\/prog/);
  });
});
