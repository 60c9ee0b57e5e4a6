# Clients that misbehave, next to a steady load of well-behaved ones: slow
# headers and slow bodies (cut by nginx's timeouts), clients that vanish
# right after sending, bodies over the limits, and a flood of malformed
# requests. The well-behaved clients are all answered and recorded, the
# others get 4xx or are cut, nothing answers 5xx, and afterwards no client
# or database connection is left over and no worker has crashed.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Faults;
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Test::More;
use Time::HiRes qw(time sleep);

my $db = $ENV{TEST_NGINX_DATABASE_URL};
plan skip_all => 'TEST_NGINX_DATABASE_URL is not set (t/README.md)' unless $db;

my $app = 'faults clients';
my $url = $db . ($db =~ /\?/ ? '&' : '?') . "application_name=" . ($app =~ s/ /%20/r);
my ($workers, $pool) = (2, 2);

my @sessions = new_sessions($db, 4);
my $backend = nginx_start(backend => 1, workers => 1);
my $nginx = nginx_start(db => $url, backend_port => $backend->{port},
                        workers => $workers,
                        http => "chathistory_database_pool_size $pool;",
                        server => 'client_header_timeout 2s; client_body_timeout 2s;'
                                  . ' send_timeout 2s; client_max_body_size 1m;');
my $port = $nginx->{port};
my @pids = children(nginx_pid($nginx));

sub req {
    my ($line, $body, %h) = @_;
    my $r = "$line HTTP/1.1\r\nHost: localhost\r\n";
    $r .= "$_: $h{$_}\r\n" for sort keys %h;
    $r .= 'Content-Length: ' . length($body) . "\r\n" if defined $body;
    return $r . "\r\n" . ($body // '');
}

# the well-behaved: the API and the pipeline
my $good = load_start(port => $port, clients => 2, seconds => 8, interval => 0.01,
    pick => sub {
        my ($i, $c) = @_;
        my $s = $sessions[$i % @sessions];
        return $i % 2
            ? { tag => 'api', expect => qq("id":"$s"), req => req("GET /api/sessions/$s") }
            : { tag => 'pipeline', req => req("POST /pipeline?session_id=$s", 'RIFF') };
    });

# the flood: malformed lines, JSON, ids, paths, methods, and bodies over
# the limits (the API's 16k, client_max_body_size 1m)
my $big_json = '{"source_lang": "en", "target_lang": "es", "title": "' . ('x' x 20000) . '"}';
my $big_audio = 'RIFF' . ("\0" x (1024 * 1024 + 10));
my @bad = (
    [400, "GARBAGE\r\n\r\n"],
    [400, "GET /api/sessions HTTP/1.1\r\nHost: localhost\r\nHost: again\r\n\r\n"],
    [400, req('POST /api/sessions', '{"source_lang": "en", ')],
    [400, req('POST /api/sessions', '[1, 2, 3]')],
    [400, req('POST /api/sessions', '{"source_lang": "english!", "target_lang": "es"}')],
    [400, req('GET /api/sessions/not-a-uuid')],
    [400, req('GET /api/sessions?limit=banana')],
    [400, req('POST /api/search', '{"query": 42}')],
    [404, req('GET /api/sessions/0190a000-0000-7000-8000-00000000dead')],
    [404, req('GET /api/nothing/here')],
    [405, req('DELETE /api/sessions')],
    [413, req('POST /api/sessions', $big_json)],
    [413, req("POST /pipeline?session_id=$sessions[0]", $big_audio)],
);
my $flood = load_start(port => $port, clients => 2, seconds => 6,
    pick => sub {
        my ($i) = @_;
        my $b = $bad[$i % @bad];
        return { tag => $b->[0], req => $b->[1] };
    });

my $slow = slow_clients($port, 40);
my $vanished = vanishing_clients($port, 100);

my $g = load_wait($good);
my $f = load_wait($flood);
my %slow = %{slow_wait($slow)};

note sprintf 'well-behaved: %d requests in %.1f s (%s); flood: %d requests (%s)',
    $g->{total}, $g->{seconds},
    join(', ', map { my $t = $_; map { "$t $_ $g->{by}{$t}{$_}" } sort keys %{$g->{by}{$t}} }
               sort keys %{$g->{by}}),
    $f->{total},
    join(', ', map { my $t = $_; map { "$t->$_ $f->{by}{$t}{$_}" } sort keys %{$f->{by}{$t}} }
               sort keys %{$f->{by}});
note "slow clients: " . join ', ', map { "$_ $slow{$_}" } sort keys %slow;
note "vanished: $vanished requests sent and abandoned";

is scalar(grep { $_->[2] !~ /^2/ } @{$g->{answers}}), 0,
   "every well-behaved request answered 2xx ($g->{total})";
my @ids = @{$g->{ids}{pipeline} // []};
is missing_messages($db, \@ids, 10), 0, scalar(@ids) . ' messages accepted, none lost';

my $wrong = grep { $_->[2] ne $_->[1] } @{$f->{answers}};
cmp_ok $f->{total}, '>', 200, 'a flood of bad requests';
is $wrong, 0, 'each bad request got its 4xx'
    or diag explain { map { $_ => $f->{by}{$_} } keys %{$f->{by}} };
is scalar(grep { $_->[2] =~ /^5/ } @{$g->{answers}}, @{$f->{answers}}), 0, 'no 5xx anywhere';

my $n_slow = 0;
$n_slow += $_ for values %slow;
is $slow{'cut by nginx'} // 0, $n_slow, "the $n_slow slow clients were cut by nginx's timeouts";

is_deeply [sort { $a <=> $b } children(nginx_pid($nginx))], [sort { $a <=> $b } @pids],
   'the same worker processes, none crashed';
ok Faults::wait_until(5, sub {
       (request_once($nginx, 'GET /status'))[1]{body} =~ /^Active connections: 1 / }),
   'no client connection left open';
cmp_ok backends($db, $app), '<=', $workers * $pool, 'database connections within the pools';
is request_once($nginx, "GET /api/sessions/$sessions[0]"), 200, 'the API answers';

# nginx itself logs a body over client_max_body_size at error
my @logged = grep { !/client intended to send too large body/ }
             nginx_log($nginx) =~ /^.*\[(?:error|crit|alert|emerg)\].*$/mg;
is scalar(@logged), 0, 'nothing else logged at error or worse'
    or diag join "\n", @logged[0 .. 2];

ok nginx_stop($nginx), 'nginx stops';
is backends($db, $app), 0, 'no database connection left behind';

done_testing;

# $n clients in one child: half send a header a line every half second,
# never finishing it; half send the head of a POST and ten bytes of its
# body, then nothing. Each waits (10 s at most) for nginx to close.
sub slow_clients {
    my ($port, $n) = @_;
    my $file = File::Temp->new;
    my $pid = fork // die "fork: $!";
    return { pid => $pid, file => $file } if $pid;

    my (%sock, %ended);
    for my $i (1 .. $n) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port)
            or next;
        $sock{$i} = $s;
        syswrite $s, $i % 2
            ? "GET /api/sessions HTTP/1.1\r\nHost: localhost\r\n"
            : "POST /api/sessions HTTP/1.1\r\nHost: localhost\r\n"
              . "Content-Length: 1000\r\n\r\n{\"source_l";
    }
    my $end = time + 10;
    my $sel = IO::Select->new(values %sock);
    while ($sel->count && time < $end) {
        for my $s ($sel->can_read(0.5)) {
            my $n = sysread $s, my $buf, 4096;
            next if $n;
            $ended{$s} = 1;
            $sel->remove($s);
        }
        for my $i (grep { $_ % 2 } keys %sock) {
            syswrite $sock{$i}, "X-Slow: $i\r\n" unless $ended{$sock{$i}};
        }
    }
    open my $out, '>', $file->filename;
    printf $out "%d %d\n", scalar(keys %ended), $n - scalar(keys %ended);
    close $out;
    POSIX::_exit(0);
}

sub slow_wait {
    my ($slow) = @_;
    waitpid $slow->{pid}, 0;
    my ($cut, $open) = split ' ', slurp_file($slow->{file}->filename) // '0 0';
    return { 'cut by nginx' => $cut, 'still open after 10 s' => $open };
}

# $n requests sent whole, half of them recorded pipeline requests, and
# their connections closed at once, without reading the answer.
sub vanishing_clients {
    my ($port, $n) = @_;
    my $sent = 0;
    local $SIG{PIPE} = 'IGNORE';
    for my $i (1 .. $n) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port)
            or next;
        my $sid = $sessions[$i % @sessions];
        $sent++ if syswrite $s, $i % 2 ? req("POST /pipeline?session_id=$sid", 'RIFF')
                                       : req("GET /api/sessions/$sid");
        close $s;
        sleep 0.01;
    }
    return $sent;
}
