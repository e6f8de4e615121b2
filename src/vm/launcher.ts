import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

// Starting shims without forking the daemon. child_process.spawn forks the calling process, and
// fork costs time in proportion to what the process has mapped: ~10 ms for a daemon of a few
// hundred MB, on the event loop, per VM (11 s of a 1,000-VM wave, measured). So the daemon keeps
// one small Perl process (a "zygote", ~2 MB) that forks and execs each shim on request: a
// fork of it costs a fraction of a millisecond, and the daemon only writes a line.
//
// The launcher puts each child in its own session (setsid), in the given directory, with stdin
// from /dev/null, stdout and stderr appended to a file, and exactly the given environment; then
// it answers with the pid, or why it could not. Children are not waited for (SIGCHLD ignored:
// the kernel reaps them); the shim records its program's exit itself. If the launcher dies,
// running shims are unaffected (reparented) and the next launch starts a new launcher.
//
// A Perl script (the shim) can also be run in the forked child itself, as `perl SCRIPT ARGS`
// would run it but without starting a Perl: the child already is one. A new Perl costs ~4 ms of
// CPU (exec, dynamic linking, compiling): 100 VM starts, ~0.35 s of CPU less (measured). A script
// the daemon defines (the shim) is compiled once, when defined, and each child only calls it:
// compiling the shim took ~0.9 ms of CPU per VM start when each child read and compiled the file.
// A running child keeps the code it was forked with, so what a shim runs never changes under it.

// Protocol, one line each way, fields hex-encoded (paths and arguments may hold any byte):
//   -> ID \t hex(cwd) \t hex(output file) \t hex(argv joined by NUL) \t hex(env joined by NUL) \t MODE
//   <- ID \t pid            or            ID \t - \t reason
//   -> DEFINE \t hex(script path) \t hex(Perl source)        (compiled now; no answer)
// Answers come as each child gets there, not in the order asked: many launches are in flight.
// MODE is `exec` (argv[0] is the program) or `perl` (argv[0] is a Perl script, run in the child:
// the one defined under that path, else the file, read then).

const LAUNCHER_SOURCE = String.raw`
use strict;
use warnings;
use POSIX ();
use IO::Select;
$SIG{CHLD} = 'IGNORE';
$| = 1;
sub unhex { return pack('H*', $_[0] // '') }
my $sel = IO::Select->new(\*STDIN);
my %waiting;    # fileno of a child's error pipe -> [id, pid, pipe, what the child wrote]
my %scripts;    # path -> compiled code, or why it did not compile
my $defined = 0;
my $in = '';
while (1) {
  for my $fh ($sel->can_read()) {
    if (fileno($fh) == fileno(STDIN)) {
      my $n = sysread(STDIN, $in, 65536, length $in);
      next if !defined $n && $!{EINTR};
      exit 0 unless $n;    # the daemon is gone: nobody to answer
      while ((my $nl = index($in, "\n")) >= 0) {
        my $line = substr($in, 0, $nl + 1, '');
        chomp $line;
        start($line);
      }
      next;
    }
    my $w = $waiting{fileno $fh};
    my $n = sysread($fh, $w->[3], 4096, length $w->[3]);
    next if $n || (!defined $n && $!{EINTR});
    # EOF: the child exec'd, handed over to its script, or wrote why it could not and exited.
    delete $waiting{fileno $fh};
    $sel->remove($fh);
    close $fh;
    if ($w->[3] ne '') { print "$w->[0]\t-\t$w->[3]\n" } else { print "$w->[0]\t$w->[1]\n" }
  }
}

sub define {
  my ($path, $src) = map { unhex($_) } @_;
  $defined++;
  # Each in its own package (a redefinition does not clash); named subs inside must not use the
  # script's file-level lexicals, which a closure would share wrongly: that is an error here.
  (my $shown = $path) =~ s/[\r\n"]/?/g;    # a file name for messages, never code
  my $code = eval "package Blixard::Script$defined; use warnings FATAL => 'closure'; sub {\n#line 1 \"$shown\"\n$src\n}";
  $scripts{$path} = $code // "compiling $path: " . ($@ =~ s/\s+$//r);
}

sub start {
  my ($id, $cwd, $out, $argv, $env, $mode) = split /\t/, $_[0], -1;
  if ($id eq 'DEFINE') { define($cwd, $out); return }
  return unless defined $mode;
  my @argv = split /\0/, unhex($argv), -1;
  my %env = map { my ($k, $v) = split /=/, $_, 2; ($k, $v // '') } grep { length } split /\0/, unhex($env), -1;
  $cwd = unhex($cwd);
  $out = unhex($out);
  pipe(my $r, my $w) or do { print "$id\t-\tpipe: $!\n"; return };
  my $pid = fork();
  if (!defined $pid) { close $r; close $w; print "$id\t-\tfork: $!\n"; return }
  if ($pid == 0) {
    close $r;
    close $_->[2] for values %waiting;    # the other children's pipes are not this one's to hold
    select((select($w), $| = 1)[0]);    # unbuffered: a reason printed just before _exit arrives
    $SIG{CHLD} = 'DEFAULT';
    POSIX::setsid();
    chdir($cwd) or do { print $w "chdir $cwd: $!"; POSIX::_exit(127) };
    open(STDIN, '<', '/dev/null');
    open(STDOUT, '>>', $out) or do { print $w "open $out: $!"; POSIX::_exit(127) };
    open(STDERR, '>&', \*STDOUT);
    %ENV = %env;
    if ($mode eq 'perl') {
      my ($script, @args) = @argv;
      my $code = $scripts{$script};
      if (defined $code && !ref $code) { print $w $code; POSIX::_exit(127) }
      if (!$code && !-r $script) { print $w "cannot read $script: $!"; POSIX::_exit(127) }
      close $w;    # the script runs: the daemon gets the pid now
      $0 = join(' ', 'perl', @argv);
      @ARGV = @args;
      if ($code) { eval { $code->(); 1 } or do { print STDERR $@; exit 255 } }
      else { do($script =~ m{^/} ? $script : "./$script"); if ($@) { print STDERR $@; exit 255 } }
      exit 0;
    }
    exec { $argv[0] } @argv or print $w "exec $argv[0]: $!";
    close $w;
    POSIX::_exit(127);
  }
  # Not waited for here: the next request is read while this child gets going, so a wave's
  # launches overlap (one at a time, each waited a scheduling round trip of its child: ~25 ms on
  # a busy machine, the 33rd VM of a node launched ~0.8 s after the first).
  close $w;
  $waiting{fileno $r} = [$id, $pid, $r, ''];
  $sel->add($r);
}
`;

export interface LaunchRequest {
  cwd: string;
  /** Appended to: the child's stdout and stderr. */
  output: string;
  /** The program and its arguments; with `perlScript`, the script and its arguments. */
  argv: string[];
  env: Record<string, string>;
  /** Run argv[0] as a Perl script inside the forked launcher instead of exec'ing a program: the
   * script defined under that path (`define`), else the file (relative to cwd). */
  perlScript?: boolean;
}

const hex = (s: string) => Buffer.from(s, 'utf8').toString('hex');
const defineLine = (path: string, source: string) => `DEFINE\t${hex(path)}\t${hex(source)}\n`;

export class Launcher {
  private proc: ChildProcess | undefined;
  private next = 0;
  private readonly waiting = new Map<number, { resolve: (pid: number) => void; reject: (e: Error) => void }>();
  /** Scripts defined: path -> source, sent again to a new launcher process. */
  private readonly scripts = new Map<string, string>();

  constructor(private readonly perl: string) {}

  /** Makes `path` (as a launch's argv[0] names it) run `source`, compiled once, in every launch
   * asked for after this. A source that does not compile fails those launches, saying why. */
  define(path: string, source: string): void {
    if (this.scripts.get(path) === source) return;
    this.scripts.set(path, source);
    this.proc?.stdin!.write(defineLine(path, source));
  }

  /** Starts `argv` detached (own session); resolves with its pid once it has been exec'd. */
  launch(req: LaunchRequest): Promise<number> {
    const proc = this.process();
    const id = ++this.next;
    const env = Object.entries(req.env).map(([k, v]) => `${k}=${v}`).join('\0');
    return new Promise<number>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.hold(proc, true);
      proc.stdin!.write(`${id}\t${hex(req.cwd)}\t${hex(req.output)}\t${hex(req.argv.join('\0'))}\t${hex(env)}\t${req.perlScript ? 'perl' : 'exec'}\n`);
    });
  }

  close(): void {
    this.proc?.stdin?.end();
    this.proc = undefined;
  }

  private hold(p: ChildProcess, on: boolean): void {
    for (const h of [p, p.stdin, p.stdout] as unknown as { ref?: () => void; unref?: () => void }[]) {
      if (on) h?.ref?.();
      else h?.unref?.();
    }
  }

  private process(): ChildProcess {
    if (this.proc) return this.proc;
    const p = spawn(this.perl, ['-e', LAUNCHER_SOURCE], { stdio: ['pipe', 'pipe', 'inherit'], env: { PATH: '/usr/bin:/bin' } });
    // An idle launcher must not keep its process alive; one with launches pending does.
    this.hold(p, false);
    const failAll = (why: string) => {
      if (this.proc === p) this.proc = undefined;
      for (const w of this.waiting.values()) w.reject(new Error(`the launcher ended (${why})`));
      this.waiting.clear();
    };
    p.on('error', (e) => failAll(e.message));
    p.on('exit', (code, signal) => failAll(signal ?? `exit code ${code}`));
    p.stdin!.on('error', () => {}); // a dead launcher surfaces through 'exit'
    for (const [file, source] of this.scripts) p.stdin!.write(defineLine(file, source));
    createInterface({ input: p.stdout! }).on('line', (line) => {
      const [id, pid, ...why] = line.split('\t');
      const w = this.waiting.get(Number(id));
      if (!w) return;
      this.waiting.delete(Number(id));
      if (this.waiting.size === 0) this.hold(p, false);
      if (pid === '-') w.reject(new Error(why.join('\t')));
      else w.resolve(Number(pid));
    });
    this.proc = p;
    return p;
  }
}
