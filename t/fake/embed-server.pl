#!/usr/bin/env perl
# A fake embedding server for the worker's tests: Ollama (/api/embed,
# /api/embeddings) and OpenAI-compatible (/v1/embeddings) over real HTTP/1.1
# with keep-alive, one forked child per connection.
#
#   embed-server.pl --port-file F [--dim 768] [--delay SECONDS]
#       [--fail-first N] [--fail-every N] [--fail-text SUBSTRING]
#       [--delay-text SUBSTRING] [--old-ollama] [--require-key KEY]
#       [--log FILE]
#
# --delay-text limits the delay to requests with an input containing it.
# Failures and delays spare the worker's start-up probe (a request whose only
# input contains "dimension probe"), so that counts concern jobs only.
# Prints nothing; writes the port it listens on to --port-file. Vectors are a
# deterministic function of the text, deliberately not normalised. --log gets
# one JSON line per request: path, connection number, request number on that
# connection, number of inputs, the inputs, the status answered.

use strict;
use warnings;

use Fcntl qw(:flock);
use File::Temp ();
use Getopt::Long;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(sleep);

my %opt = (dim => 768, delay => 0, 'fail-first' => 0, 'fail-every' => 0);
GetOptions(\%opt, 'port-file=s', 'dim=i', 'delay=f', 'fail-first=i',
           'fail-every=i', 'fail-text=s', 'delay-text=s', 'old-ollama',
           'require-key=s',
           'log=s') or die "bad options\n";

my $json = JSON::PP->new->canonical->utf8;
my $counter = File::Temp->new;    # requests so far, shared by the children

my $server = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                   Listen => 64, ReuseAddr => 1)
    or die "listen: $!\n";

if ($opt{'port-file'}) {
    open my $fh, '>', "$opt{'port-file'}.tmp" or die "$!\n";
    print $fh $server->sockport, "\n";
    close $fh;
    rename "$opt{'port-file'}.tmp", $opt{'port-file'} or die "$!\n";
}

$SIG{CHLD} = 'IGNORE';
$SIG{TERM} = sub { kill 'TERM', -$$ if getpgrp() == $$; exit 0 };
POSIX::setpgid(0, 0);

my $nconn = 0;
my $parent = getppid;

# exits with the test that started it, however that one ended
$server->timeout(1);

while (1) {
    exit 0 if getppid != $parent;
    my $c = $server->accept or next;
    $nconn++;
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        $SIG{TERM} = 'DEFAULT';
        close $server;
        serve($c, $nconn);
        POSIX::_exit(0);
    }
    close $c;
}

sub serve {
    my ($c, $conn) = @_;
    my $nreq = 0;

    while (my $req = read_request($c)) {
        $nreq++;
        my ($status, $body) = answer($req);
        log_request($req, $conn, $nreq, $status);
        sleep $opt{delay} if $opt{delay} > 0 && !is_probe($req)
            && (!defined $opt{'delay-text'}
                || grep { index($_, $opt{'delay-text'}) >= 0 }
                        @{$req->{inputs}});
        my $type = $status == 404 && $body !~ /^\{/ ? 'text/plain'
                                                   : 'application/json';
        print $c "HTTP/1.1 $status X\r\nContent-Type: $type\r\n"
               . "Content-Length: " . length($body) . "\r\n"
               . "Connection: keep-alive\r\n\r\n$body";
        last if ($req->{headers}{connection} // '') =~ /close/i;
    }
}

sub read_request {
    my ($c) = @_;
    local $/ = "\r\n";
    my $line = <$c>;
    return undef unless defined $line;
    my ($method, $path) = $line =~ m{^(\S+) (\S+)} or return undef;
    my %h;
    while (defined(my $l = <$c>)) {
        last if $l eq "\r\n";
        $h{lc $1} = $2 if $l =~ /^([^:]+):\s*(.*?)\r\n$/;
    }
    my $body = '';
    my $len = $h{'content-length'} // 0;
    while (length($body) < $len) {
        my $n = read($c, $body, $len - length($body), length($body));
        return undef unless $n;
    }
    return { method => $method, path => $path, headers => \%h, body => $body };
}

sub is_probe {
    my ($req) = @_;
    my @in = @{$req->{inputs} // []};
    return @in == 1 && index($in[0], 'dimension probe') >= 0;
}

sub next_count {
    open my $fh, '+<', $counter->filename or die "$!\n";
    flock $fh, LOCK_EX;
    my $n = <$fh> // 0;
    $n++;
    seek $fh, 0, 0;
    truncate $fh, 0;
    print $fh "$n\n";
    close $fh;
    return $n;
}

sub answer {
    my ($req) = @_;
    my $in = eval { decode_json($req->{body}) } // {};
    $req->{inputs} = inputs($req->{path}, $in);
    my $n = is_probe($req) ? 0 : next_count();

    if ($req->{path} eq '/api/embed' && $opt{'old-ollama'}) {
        return (404, '404 page not found');
    }
    if ($opt{'require-key'}
        && ($req->{headers}{authorization} // '') ne "Bearer $opt{'require-key'}")
    {
        return (401, '{"error":{"message":"bad key"}}');
    }
    if ($n == 0) {
        # the probe
    } elsif ($n <= $opt{'fail-first'}
        || ($opt{'fail-every'} && $n % $opt{'fail-every'} == 0)
        || (defined $opt{'fail-text'}
            && grep { index($_, $opt{'fail-text'}) >= 0 } @{$req->{inputs}}))
    {
        return (500, '{"error":"injected failure"}');
    }

    my @vecs = map { vector($_) } @{$req->{inputs}};

    if ($req->{path} eq '/api/embed') {
        return (200, $json->encode({ model => $in->{model},
                                     embeddings => \@vecs }));
    }
    if ($req->{path} eq '/api/embeddings') {
        return (200, $json->encode({ embedding => $vecs[0] }));
    }
    if ($req->{path} eq '/v1/embeddings') {
        # answered in reverse order: clients must use "index"
        my @data = reverse map { { object => 'embedding', index => $_,
                                   embedding => $vecs[$_] } } 0 .. $#vecs;
        return (200, $json->encode({ object => 'list', data => \@data,
                                     model => $in->{model} }));
    }
    return (404, '404 page not found');
}

sub inputs {
    my ($path, $in) = @_;
    return [$in->{prompt} // ''] if $path eq '/api/embeddings';
    my $i = $in->{input};
    return ref $i eq 'ARRAY' ? $i : defined $i ? [$i] : [];
}

# a deterministic, unnormalised vector: the byte values spread over dims
sub vector {
    my ($text) = @_;
    my @v = (0) x $opt{dim};
    my $i = 0;
    for my $b (unpack 'C*', $text) {
        $v[($b * 31 + $i++) % $opt{dim}] += 1 + ($b % 7);
    }
    $v[0] += 1;
    return [map { $_ * 3 } @v];
}

sub log_request {
    my ($req, $conn, $nreq, $status) = @_;
    return unless $opt{log};
    open my $fh, '>>', $opt{log} or return;
    flock $fh, LOCK_EX;
    print $fh $json->encode({ path => $req->{path}, conn => $conn,
                              req => $nreq, status => $status,
                              inputs => $req->{inputs},
                              auth => $req->{headers}{authorization} // '' }),
              "\n";
    close $fh;
}
