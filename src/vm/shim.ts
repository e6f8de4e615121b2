// The shim: the small supervisor between the daemon and each VM's process.
//
// The daemon's launcher (launcher.ts) runs it detached (own session, stdio to files) in the VM's
// folder, in a fork of its own Perl rather than a new one (as `perl shim.pl ARGS`). It forks the
// program (qemu-system-x86_64, or the executable) into its own process group, records the pid
// and start time (run.json), waits for it, and records the wait status (exit.json). The daemon
// can die and restart meanwhile: those two files, checked against /proc, are all it needs.
//
// Why Perl, and not a Node script or POSIX sh:
// - Node: ~80 ms of CPU to start and ~40 MB resident per shim (measured, Node 20). The process
//   driver is meant to run 1,000 VMs on one node: 1,000 Node shims would cost over a minute of
//   CPU and tens of GB of memory, just to wait on a pid.
// - sh: `wait` folds "killed by signal N" and "exited with 128+N" into the same number, so the
//   exit record could not say whether the VM was SIGKILLed or exited 137. And an asynchronous
//   list (`prog &`) in a non-interactive sh runs with SIGINT and SIGQUIT ignored, which the
//   program would inherit; dash cannot undo that.
// - Perl: `waitpid` and `$?` give the exact wait status; fork/exec leave signal dispositions
//   alone; pipes are close-on-exec by default, so the shim learns whether exec failed (and why)
//   instead of guessing from exit code 127. Run in a fork of the launcher it starts in well
//   under a millisecond (a Perl of its own: ~4 ms of CPU) and costs ~0.85 MB (PSS, measured with
//   1,000 VMs running, when each was a Perl of its own). `perl-base` is Essential in Debian (present on every Debian/Ubuntu system) and the
//   shim uses only the core language: no module outside perl-base.
//
// The launcher compiles the script once and runs it in each fork, so a running shim never
// depends on the daemon's install (an upgrade cannot change a running VM's supervisor). A copy
// sits beside the VM folders (`<driver root>/shim.pl`, what `ps` names); `perl ../shim.pl ...`
// in a VM folder runs it by hand the same way. Named subs below must not use the file's `my`
// variables: compiled inside the launcher's sub, they would share them wrongly (the launcher
// refuses such a script).

export const SHIM_SOURCE = String.raw`#!/usr/bin/perl
# blixard shim (a copy beside the VM folders). Usage (cwd = the VM folder):
#   perl ../shim.pl [--fence FILE] [--rlimit-syscall NR --rlimit RESOURCE=SOFT:HARD ...]
#                LAUNCH_ID OUTPUT_FILE -- PROGRAM [ARG...]
# --rlimit sets a resource limit of the program (RLIMIT_* numbers) before it is exec'd, through
# the prlimit64 system call (number NR on this architecture): Perl's core has no setrlimit, and
# running prlimit(1) in between was one more program started for every VM.
use strict;
# No "use warnings": it would turn off the launcher's check that named subs share no file-level
# lexicals, and it once doubled the shim's start when each start compiled it.

my ($fence, $rlimit_nr, @rlimits);
while (@ARGV && $ARGV[0] =~ /^--(fence|rlimit-syscall|rlimit)$/) {
  my ($opt, $v) = (shift @ARGV, shift @ARGV);
  if ($opt eq '--fence') { $fence = $v }
  elsif ($opt eq '--rlimit-syscall') { $rlimit_nr = $v }
  elsif (defined $v && $v =~ /^(\d+)=(\d+):(\d+)$/) { push @rlimits, [0 + $1, 0 + $2, 0 + $3] }
  else { die "blixard-shim: bad --rlimit " . ($v // '') . "\n" }
}
my ($launch, $output, $sep, @argv) = @ARGV;
die "usage: shim.pl [--fence FILE] [--rlimit-syscall NR --rlimit RESOURCE=SOFT:HARD ...] LAUNCH_ID OUTPUT_FILE -- PROGRAM [ARG...]\n"
  unless defined $sep && $sep eq '--' && @argv && $launch =~ /^[0-9a-f]+$/ && (!@rlimits || (defined $rlimit_nr && $rlimit_nr =~ /^\d+$/));

sub slurp { my ($f) = @_; open(my $fh, '<', $f) or return undef; local $/; my $s = <$fh>; close $fh; return $s }

# Field 22 of /proc/PID/stat (start time in ticks after boot), after the "(comm)" field.
sub start_ticks {
  my $s = slurp("/proc/$_[0]/stat");
  die "blixard-shim: cannot read /proc/$_[0]/stat\n" unless defined $s;
  $s =~ s/^.*\) //s;
  return (split / /, $s)[19];
}

sub json_str { my ($s) = @_; $s =~ s/(["\\])/\\$1/g; $s =~ s/([\x00-\x1f])/sprintf('\\u%04x', ord $1)/ge; return "\"$s\"" }

sub write_atomic {
  my ($file, $text) = @_;
  my $tmp = "$file.$$.tmp";
  open(my $fh, '>', $tmp) or die "blixard-shim: $tmp: $!\n";
  print $fh $text;
  close($fh) or die "blixard-shim: $tmp: $!\n";
  rename($tmp, $file) or die "blixard-shim: rename $tmp: $!\n";
}

# Perl marks pipes close-on-exec: EOF on $r means exec worked, anything else is why it did not.
pipe(my $r, my $w) or die "blixard-shim: pipe: $!\n";
my $pid = fork();
die "blixard-shim: fork: $!\n" unless defined $pid;
if ($pid == 0) {
  close $r;
  setpgrp(0, 0);    # own process group: stop signals the program and its children, not the shim
  for my $l (@rlimits) {
    # prlimit64(0 = this process, resource, new {soft, hard}, NULL)
    # (syscall passes what is a number as a number, anything else as a pointer to its bytes)
    if (syscall(0 + $rlimit_nr, 0, $l->[0], pack('Q2', $l->[1], $l->[2]), 0) != 0) { print $w "setrlimit $l->[0]: $!"; exit 127 }
  }
  open(STDIN, '<', '/dev/null');
  if (!open(STDOUT, '>>', $output)) { print $w "open $output: $!"; exit 127 }
  open(STDERR, '>&', \*STDOUT);
  exec { $argv[0] } @argv or print $w "exec $argv[0]: $!";
  close $w;
  exit 127;
}
close $w;
my $exec_error = do { local $/; <$r> } // '';
close $r;

# Signals sent to the shim itself (an operator's kill) go to the program, which then ends and
# is recorded like any other end. The daemon signals the program's group directly.
$SIG{$_} = sub { kill $_[0], -$pid } for qw(TERM INT HUP QUIT);
$SIG{PIPE} = 'IGNORE';

my $boot = slurp('/proc/sys/kernel/random/boot_id') // '';
chomp $boot;
# Until waitpid below the program is at worst a zombie, so its /proc entry is still there.
write_atomic('run.json', sprintf(
  qq({"launchId":%s,"bootId":%s,"shimPid":%d,"shimStartTicks":%s,"pid":%d,"startTicks":%s%s}\n),
  json_str($launch), json_str($boot), $$, start_ticks($$), $pid, start_ticks($pid),
  length($exec_error) ? ',"execError":' . json_str($exec_error) : ''));

# The dead man's switch (fencing when the daemon is gone). The daemon rewrites the fence file
# every second with the number of seconds after which its VMs must not run without it (0: never,
# e.g. a cluster of one node). Should the daemon die and stay dead that long, the cluster will
# soon run this VM elsewhere: the shim stops it first (TERM to its group, KILL after the grace),
# so that a VM never runs on two nodes. A restarted daemon keeps the file fresh and adopts the VM.
my $GRACE = 10;
my ($fenced_at, $limit) = (0, 0);
$SIG{CHLD} = sub {};    # wakes the sleep below when the program ends
while (1) {
  my $r = waitpid($pid, 1);    # WNOHANG
  last if $r == $pid;
  die "blixard-shim: waitpid $pid: $!\n" if $r < 0;
  if (defined $fence) {
    my $now = time;
    if (!$fenced_at) {
      my $text = slurp($fence);
      $limit = $1 if defined $text && $text =~ /^\s*(\d+)/;
      my $mtime = (stat($fence))[9];
      if ($limit > 0 && defined $mtime && $now - $mtime > $limit) {
        $fenced_at = $now;
        write_atomic('fenced.json', sprintf(qq({"launchId":%s,"time":%d,"daemonSilentFor":%d}\n), json_str($launch), $now, $now - $mtime));
        kill 'TERM', -$pid;
      }
    } elsif ($now - $fenced_at >= $GRACE) {
      kill 'KILL', -$pid;
    }
  }
  sleep 1;
}
my $status = $?;
my $signal = $status & 127;
write_atomic('exit.json', sprintf(
  qq({"launchId":%s,"pid":%d,"status":%d,"code":%s,"signal":%s,"core":%s,"time":%d}\n),
  json_str($launch), $pid, $status, $signal ? 'null' : ($status >> 8), $signal ? $signal : 'null',
  ($status & 128) ? 'true' : 'false', time));
exit 0;
`;
