# A recorded answer streams: the client gets each part as the pipeline
# sends it, not the whole answer once it is complete. The pipeline here
# sends the first half of its JSON answer and then waits, until the test
# has seen that half arrive at the client, before it sends the rest; an
# nginx that held the answer back would make the test time out.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/faults/lib";
use Faults;
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Test::More;

my $db = $ENV{TEST_NGINX_DATABASE_URL};
plan skip_all => 'TEST_NGINX_DATABASE_URL is not set (t/README.md)' unless $db;

my ($session) = new_sessions($db, 1);
my $first = '{"transcript":"good morning, how are you",';
my $rest = '"translation":"bom dia, como vai","model_used":"stream"}';

# The pipeline: one answer per connection, its second half when told to.
my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                   Listen => 8, ReuseAddr => 1)
    or die "listen: $!";
pipe(my $go_read, my $go_write) or die "pipe: $!";
my $pipeline = fork // die "fork: $!";
if ($pipeline == 0) {
    close $go_write;
    while (my $c = $listen->accept) {
        my $req = '';
        while ($req !~ /\r\n\r\n/) {
            sysread($c, $req, 4096, length $req) or last;
        }
        syswrite $c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     . "Content-Length: " . length($first . $rest) . "\r\n\r\n$first";
        # the rest when the test says so, or after 10 s whatever happens
        IO::Select->new($go_read)->can_read(10) and sysread $go_read, my $go, 1;
        syswrite $c, $rest;
        close $c;
    }
    POSIX::_exit(0);
}
close $go_read;
END { kill 'TERM', $pipeline if $pipeline; }

my $stream = 'location /stream {
            chathistory_capture on;
            proxy_buffering off;
            proxy_pass http://127.0.0.1:' . $listen->sockport . '/answer;
        }';
my $nginx = nginx_start(db => $db, backend_port => $listen->sockport, workers => 1,
                        server => $stream);

# Reads from $sock until $want matches what came, for at most $seconds.
sub read_until {
    my ($sock, $buf, $want, $seconds) = @_;
    my $sel = IO::Select->new($sock);
    my $end = time + $seconds;
    while ($$buf !~ $want) {
        my $left = $end - time;
        return 0 if $left <= 0 || !$sel->can_read($left);
        sysread($sock, $$buf, 65536, length $$buf) or return 0;
    }
    return 1;
}

for my $case (["GET /stream?session_id=$session", 'recorded'],
              ["GET /stream", 'not recorded'])
{
    my ($line, $what) = @$case;
    my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $nginx->{port})
        or die "connect: $!";
    syswrite $c, "$line HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

    my $got = '';
    ok(read_until($c, \$got, qr/\r\n\r\n.*\Q$first\E/s, 5),
       "$what: the first half reaches the client while the pipeline holds the rest");
    unlike($got, qr/translation/, "$what: and only the first half");

    syswrite $go_write, 'x';
    ok(read_until($c, \$got, qr/\Q$rest\E/, 5), "$what: then the rest");
    my ($head, $body) = split /\r\n\r\n/, $got, 2;
    $body =~ s/^[0-9a-f]+\r\n|\r\n[0-9a-f]+\r\n|\r\n0\r\n\r\n$//g
        if $head =~ /Transfer-Encoding: chunked/i;
    is($body, $first . $rest, "$what: the answer is the pipeline's, byte for byte");

    my ($id) = $head =~ /^X-Chathistory-Message-Id: ([0-9a-f-]{36})\r?$/mi;
    if ($what eq 'recorded') {
        ok($id, "recorded: the message id is announced");
        is(missing_messages($db, [$id // '00000000-0000-0000-0000-000000000000'], 10), 0,
           "recorded: once complete, the answer is a message");
    } else {
        ok(!$id, "not recorded: no message id");
    }
    close $c;
}

done_testing();
