package Chathistory::Helpers;

# The small helpers every test suite needs, whatever runs it: t/*.t (through
# t/lib/Chathistory.pm), t/faults (t/faults/lib/Faults.pm) and t/worker
# (t/worker/lib/ChwTest.pm). Nothing here knows Test::Nginx.

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter 'import';
use File::Basename qw(dirname);
use IO::Socket::INET;
use Time::HiRes ();

our @EXPORT_OK = qw(psql_rows free_port wait_until slurp read_pid $ROOT);

# the repository's top directory
our $ROOT = abs_path(dirname(__FILE__) . '/../../..');

# Runs SQL with psql against $url; returns the rows of its last statement,
# each an array of its columns (split on "|"). Dies when psql fails.
sub psql_rows {
    my ($url, $statement) = @_;
    open my $p, '-|', 'psql', $url, '-X', '-q', '-A', '-t',
        '-v', 'ON_ERROR_STOP=1', '-c', $statement
        or die "cannot run psql: $!";
    my @rows = map { chomp; [split /\|/, $_, -1] } <$p>;
    close $p or die "psql failed on: $statement\n";
    return @rows;
}

# An unused TCP port on 127.0.0.1, chosen by the kernel.
sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 1) or die "cannot listen: $!";
    return $s->sockport;
}

# Polls $cond (a sub; dying counts as false) every 50 ms until it is true:
# 1, or 0 once $seconds have passed (it is tried once more at the end).
sub wait_until {
    my ($seconds, $cond) = @_;
    my $end = Time::HiRes::time() + $seconds;
    while (1) {
        my $ok = eval { $cond->() };
        return 1 if $ok;
        return 0 if Time::HiRes::time() >= $end;
        Time::HiRes::sleep(0.05);
    }
}

# A file's content; '' when it cannot be read.
sub slurp {
    open my $fh, '<', $_[0] or return '';
    local $/;
    return scalar <$fh>;
}

# The pid in a pid file; undef when there is none.
sub read_pid {
    my ($file) = @_;
    open my $fh, '<', $file or return;
    my $pid = <$fh>;
    return defined $pid && $pid =~ /^(\d+)/ ? $1 : undef;
}

1;
