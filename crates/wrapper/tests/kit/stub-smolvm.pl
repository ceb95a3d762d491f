#!/usr/bin/perl
# A stub `smolvm` for the wrapper's contract tests: it never runs the scripts
# it is given (they would resize the host's PTYs), it models only what the
# wrapper can observe and must respect, and it journals every step to
# $STUB_DIR/journal as "<epoch ms> <pid> <event> [fields]".
#
#   --version                 prints "smolvm $STUB_VERSION" (default 0.8.0); "hang": sleeps
#   machine exec -t -- CMD    the main exec: bring-up ($STUB_BRINGUP_MS), then raw mode and
#                             O_NONBLOCK on fd 0 like the real client, then the crun window
#                             ($STUB_CRUN_MS) during which $STUB_DIR/window exists; then it
#                             waits for "q" on stdin, restores the terminal, exits $STUB_EXIT.
#                             SIGWINCH is journalled. Killed by a signal it restores nothing.
#   machine exec -i -- sh -c  the channel: bring-up ($STUB_SIDE_MS), then "ID C R" lines
#                             answered "ok ID C R"; $STUB_SIDE_HANG=1 ignores EOF.
#   machine exec -- sh -c     one push: bring-up ($STUB_SIDE_MS), journals the size.
# Side channels and pushes journal how their script finds the session's PTY
# (target=record|marker|every-pty|none). With $STUB_KILL_CHANNEL=1 the main
# exec SIGKILLs the channel as it exits, as smolvm 0.8.0 kills every exec of
# the container when the main command ends. With $STUB_CHANNEL_DIES=1 the
# channel exits 1 after its first answer (a channel that dies mid-session).
use strict;
use warnings;
use POSIX qw(:termios_h);
use Fcntl;
use Time::HiRes qw(time sleep);

my $dir = $ENV{STUB_DIR} or die "STUB_DIR unset";
sub journal {
    open(my $j, '>>', "$dir/journal") or die "journal: $!";
    printf $j "%.3f %d %s\n", time() * 1000, $$, join(' ', @_);
    close $j;
}
sub ms { sleep(($_[0] // 0) / 1000) }
sub inwindow { -e "$dir/window" ? "inwindow=1" : "inwindow=0" }

if (@ARGV && $ARGV[0] eq '--version') {
    my $v = $ENV{STUB_VERSION} // '0.8.0';
    journal('version');
    if ($v eq 'hang') { sleep 60; exit 0 }
    print "smolvm $v\n";
    exit 0;
}
my @a = @ARGV;
splice(@a, 0, 2);    # machine exec
my ($tty, $inter, $marked) = (0, 0, 0);
while (@a) {
    my $x = shift @a;
    last if $x eq '--';
    $tty = 1 if $x eq '-t';
    $inter = 1 if $x eq '-i';
    $marked = 1 if $x =~ /^PTY_RESIZE_SESSION=[0-9a-f]{16}$/;
    shift @a if $x eq '--name';
}
my $script = join(' ', @a);
sub target {
    return 'every-pty' if $script =~ m{for \w+ in /dev/pts/};
    return 'marker' if $script =~ /PTY_RESIZE_SESSION/;
    return 'record' if $script =~ m{/tmp/\.pty-resize-\d+};
    return 'none';
}
if ($tty) { main_exec() }
elsif ($inter) { channel() }
else { side_exec() }

sub main_exec {
    my $prologue = $script =~ /^sh -c (?:: pty-resize-prologue; )?stty cols (\d+) rows (\d+)/ ? "prologue=$1x$2" : "prologue=none";
    if (open(my $w, '>', "$dir/window")) { close $w }
    journal('main-start', $prologue, "marker=$marked");
    $SIG{WINCH} = sub { journal('winch') };
    ms($ENV{STUB_BRINGUP_MS} // 100);
    my $saved = POSIX::Termios->new;
    $saved->getattr(0);
    my $raw = POSIX::Termios->new;
    $raw->getattr(0);
    $raw->setlflag($raw->getlflag & ~(ECHO | ICANON | ISIG | IEXTEN));
    $raw->setiflag($raw->getiflag & ~(BRKINT | ICRNL | INPCK | ISTRIP | IXON));
    $raw->setattr(0, TCSAFLUSH);
    my $fl = fcntl(STDIN, F_GETFL, 0);
    fcntl(STDIN, F_SETFL, $fl | O_NONBLOCK);
    journal('main-raw');
    ms($ENV{STUB_CRUN_MS} // 100);
    unlink "$dir/window";
    journal('main-running');
    while (1) {
        my $buf;
        my $n = sysread(STDIN, $buf, 64);
        last if defined $n && ($n == 0 || $buf =~ /q/);
        ms(10);
    }
    $saved->setattr(0, TCSANOW);
    fcntl(STDIN, F_SETFL, $fl);
    if ($ENV{STUB_KILL_CHANNEL} && open(my $p, '<', "$dir/channel.pid")) {
        my $pid = <$p>;
        chomp $pid;
        kill 'KILL', $pid;
        journal('channel-killed');
        # smolvm's client exits a moment after its container's execs died.
        ms(200);
    }
    journal('main-exit');
    exit($ENV{STUB_EXIT} // 0);
}

sub channel {
    journal('channel-start', inwindow(), 'target=' . target());
    if (open(my $p, '>', "$dir/channel.pid")) { print $p "$$\n"; close $p }
    $| = 1;
    ms($ENV{STUB_SIDE_MS} // 50);
    journal('channel-running');
    while (my $line = <STDIN>) {
        my ($i, $c, $r) = split ' ', $line;
        journal('channel-push', "size=${c}x$r");
        print "ok $i $c $r\n";
        if ($ENV{STUB_CHANNEL_DIES}) { journal('channel-dies'); exit 1 }
    }
    journal('channel-eof');
    sleep 60 if $ENV{STUB_SIDE_HANG};
    exit 0;
}

sub side_exec {
    journal('exec-start', inwindow());
    ms($ENV{STUB_SIDE_MS} // 50);
    my $size = $script =~ /cols (\d+) rows (\d+)/ ? "size=$1x$2"
        : $script =~ /^sh -c set -- [0-9a-f]{16} (\d+) (\d+);/ ? "size=$1x$2"
        : "size=none";
    journal('exec-push', $size, 'target=' . target());
    exit 0;
}
