# nginx stopped fast (TERM: the workers leave at once, without waiting for
# the database): the messages a worker held, waiting for their batch or in
# a batch the database had not answered, are in the spool when it is gone,
# and the next nginx writes them, each once.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Faults;
use Test::More;
use Time::HiRes qw(sleep);

my $db = $ENV{TEST_NGINX_DATABASE_URL};
plan skip_all => 'TEST_NGINX_DATABASE_URL is not set (t/README.md)' unless $db;

my ($session) = new_sessions($db, 1);
my $backend = nginx_start(backend => 1, workers => 1);

# Captured requests, one at a time; the ids nginx announced.
sub capture {
    my ($n, $count, $tag) = @_;
    my @ids;
    for my $i (1 .. $count) {
        my ($status, $res) = request_once($n, "GET /pipeline?session_id=$session&say=$tag$i");
        push @ids, $res->{msgid} if $status == 200 && $res->{msgid};
    }
    return @ids;
}

sub spooled {
    my ($dir) = @_;
    opendir my $dh, $dir or return ();
    return sort map { /^([0-9a-f-]{36})\.json$/ ? $1 : () } readdir $dh;
}

sub stop_fast {
    my ($n) = @_;
    my $pid = nginx_signal($n, 'TERM');
    ok(wait_until(10, sub { !kill 0, $pid }), "nginx stopped at once");
}

# 1. Messages waiting for their batch (a second's interval).
my $nginx = nginx_start(db => $db, backend_port => $backend->{port}, workers => 1,
                        http => 'chathistory_capture_flush 1s;');
my @waiting = capture($nginx, 5, 'w');
is(scalar @waiting, 5, "five messages announced");
stop_fast($nginx);
is_deeply([spooled($nginx->{spool})], [sort @waiting],
          "the messages waiting for their batch are in the spool");
is(missing_messages($db, \@waiting), 5, "and not in the database yet");

my $next = nginx_start(db => $db, backend_port => $backend->{port}, workers => 1,
                       spool => $nginx->{spool});
is(missing_messages($db, \@waiting, 15), 0, "the next nginx writes them");
ok(wait_until(5, sub { !spooled($nginx->{spool}) }), "and empties the spool");
nginx_stop($next);

# 2. A batch the database has not answered: the messages table is locked
# while nginx writes, and nginx stops meanwhile.
my $locker = lock_messages($db, 3);
ok($locker, "the messages table is locked");

$nginx = nginx_start(db => $db, backend_port => $backend->{port}, workers => 1,
                     http => 'chathistory_capture_flush 0;');
my @in_flight = capture($nginx, 5, 'f');
is(scalar @in_flight, 5, "five messages announced while the table is locked");
sleep 0.3;
stop_fast($nginx);
is_deeply([spooled($nginx->{spool})], [sort @in_flight],
          "the messages of the unanswered batch are in the spool");
waitpid $locker, 0;

$next = nginx_start(db => $db, backend_port => $backend->{port}, workers => 1,
                    spool => $nginx->{spool});
is(missing_messages($db, \@in_flight, 15), 0, "after the lock, all are in the database");
ok(wait_until(5, sub { !spooled($nginx->{spool}) }), "the spool is empty again");
my $list = join ',', map { "'$_'" } @in_flight;
is((psql_rows($db, "SELECT count(*) FROM messages WHERE id IN ($list)"))[0][0], 5,
   "each once, whether the stopped worker's statement went through or not");
is((psql_rows($db, "SELECT count(*) FROM jobs WHERE payload->>'message_id' IN ($list)"))[0][0],
   5, "with one embedding job each");
nginx_stop($next);

unlike(nginx_log($nginx), qr/\[(alert|emerg)\]|lost/, "no alert, nothing lost");

done_testing();
