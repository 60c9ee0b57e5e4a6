#!/usr/bin/env perl
# A TCP proxy on loopback between the worker and PostgreSQL, for the fault
# tests: it passes bytes both ways, or stalls (accepts connections and
# forwards nothing, either way, on old and new connections alike: a
# black-holed port, a hung proxy, a partition that keeps the sockets open),
# or resets (every connection closed with a RST), or refuses (resets, and
# resets every new connection at once).
#
#   tcp-proxy.pl --to HOST:PORT --port-file F --control F [--log F]
#
# The mode is the first word of the --control file (pass when there is
# none), read every 20 ms; once a new line is in force the proxy copies it
# to F.ack, so that a test knows. "reset" resets once, then passes (write
# "reset 2" to reset again). Bytes
# held while stalled go on when it passes again, as after a partition.
# --log gets a line per event: time, "accept N", "close N", "reset N".
# One process, one select() loop; it exits with the test that started it.

use strict;
use warnings;

use Getopt::Long;
use IO::Select;
use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_LINGER);
use Time::HiRes qw(time);

my %opt;
GetOptions(\%opt, 'to=s', 'port-file=s', 'control=s', 'log=s')
    or die "bad options\n";
die "--to HOST:PORT and --control F are required\n"
    unless $opt{to} && $opt{control};

my $server = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                   Listen => 64, ReuseAddr => 1)
    or die "listen: $!\n";

if ($opt{'port-file'}) {
    open my $fh, '>', "$opt{'port-file'}.tmp" or die "$!\n";
    print $fh $server->sockport, "\n";
    close $fh;
    rename "$opt{'port-file'}.tmp", $opt{'port-file'} or die "$!\n";
}

my $parent = getppid;
my $mode = 'pass';
my $applied = '';
my $n = 0;
my %peer;      # fileno => the socket at the other end (paired ones)
my %sock;      # fileno => socket, every client and upstream socket
my %id;        # fileno => connection number
my @unpaired;  # clients accepted while stalled, not yet connected upstream

$SIG{TERM} = sub { exit 0 };
$SIG{PIPE} = 'IGNORE';

while (1) {
    exit 0 if getppid != $parent;
    control();

    my $sel = IO::Select->new($server);
    $sel->add(values %sock) if $mode eq 'pass';

    for my $fh ($sel->can_read(0.02)) {
        if ($fh == $server) {
            accept_one();
        } elsif (defined fileno $fh && $sock{fileno $fh}) {
            # (not one dropped with its peer earlier in this round)
            forward($fh);
        }
    }
}

sub control {
    open my $fh, '<', $opt{control} or return;
    my $line = scalar(<$fh>) // '';
    close $fh;
    chomp $line;
    return if $line eq $applied;
    my ($want) = $line =~ /(\w+)/;
    $want //= 'pass';

    reset_all() if $want eq 'reset' || $want eq 'refuse';
    $mode = $want eq 'reset' ? 'pass' : $want;
    pair(shift @unpaired) while $mode eq 'pass' && @unpaired;
    $applied = $line;

    open my $ack, '>', "$opt{control}.ack.tmp" or die "$!\n";
    print $ack "$line\n";
    close $ack;
    rename "$opt{control}.ack.tmp", "$opt{control}.ack" or die "$!\n";
}

sub accept_one {
    my $c = $server->accept or return;
    $n++;
    logline("accept $n");

    if ($mode eq 'refuse') {
        rst($c);
        logline("reset $n");
        return;
    }

    if ($mode eq 'stall') {
        $id{fileno $c} = $n;
        push @unpaired, $c;
        return;
    }

    $id{fileno $c} = $n;
    pair($c);
}

sub pair {
    my ($c) = @_;
    my $u = IO::Socket::INET->new(PeerAddr => $opt{to});
    if (!$u) {
        logline("close $id{fileno $c} (upstream: $!)");
        delete $id{fileno $c};
        close $c;
        return;
    }
    $id{fileno $u} = $id{fileno $c};
    $peer{fileno $c} = $u;
    $peer{fileno $u} = $c;
    $sock{fileno $c} = $c;
    $sock{fileno $u} = $u;
}

sub forward {
    my ($fh) = @_;
    my $other = $peer{fileno $fh};
    my $got = sysread $fh, my $buf, 65536;

    if (!$got) {
        drop($fh, 'close');
        return;
    }

    my $off = 0;
    while ($off < $got) {
        my $w = syswrite $other, $buf, $got - $off, $off;
        if (!defined $w) {
            drop($fh, 'close');
            return;
        }
        $off += $w;
    }
}

sub drop {
    my ($fh, $how) = @_;
    my $other = $peer{fileno $fh};
    logline("$how $id{fileno $fh}");
    for my $s (grep { defined } $fh, $other) {
        my $f = fileno $s;
        delete $peer{$f};
        delete $sock{$f};
        delete $id{$f};
        $how eq 'reset' ? rst($s) : close $s;
    }
}

sub reset_all {
    for my $f (keys %sock) {
        drop($sock{$f}, 'reset') if $sock{$f};
    }
    for my $c (@unpaired) {
        logline("reset $id{fileno $c}");
        delete $id{fileno $c};
        rst($c);
    }
    @unpaired = ();
}

# a close with SO_LINGER 0: the peer gets a RST, not a FIN
sub rst {
    my ($s) = @_;
    setsockopt($s, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
    close $s;
}

sub logline {
    return unless $opt{log};
    open my $fh, '>>', $opt{log} or return;
    printf $fh "%.3f %s\n", time, $_[0];
    close $fh;
}
