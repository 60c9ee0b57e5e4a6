# Batches of recorded messages and the database. Each worker writes its
# messages a batch at a time, one statement over many sessions, and batches
# of several workers run at once: they take the sessions' rows in one order
# (ids ascending), so that no two can deadlock; a batch that PostgreSQL
# aborts all the same (a deadlock with some other transaction) is sent
# again whole, not written message by message; and batches run on one
# connection of the pool, its writer, while the API's statements take the
# others.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib", "$FindBin::Bin/../worker/lib";
use ChwTest qw(setup_db);
use Faults;
use Test::More;
use Time::HiRes qw(sleep);

# a database of its own: the sessions and messages it makes stay out of the
# other suites' lists and searches
my $db = setup_db();


# psql in a child process, each argument a command of one session.
sub psql_child {
    my @commands = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        exec 'psql', $db, '-X', '-q', '-v', 'ON_ERROR_STOP=1', map { ('-c', $_) } @commands;
        die "exec psql: $!";
    }
    return $pid;
}

# How many of these sessions another transaction holds.
sub held {
    my @ids = @_;
    my $list = join ',', map { "'$_'" } @ids;
    my ($free) = psql_rows($db, "SELECT count(*) FROM (SELECT 1 FROM sessions"
                                . " WHERE id IN ($list) FOR NO KEY UPDATE SKIP LOCKED) f");
    return @ids - $free->[0];
}

sub waiting_for_a_lock {
    my ($like) = @_;
    my ($row) = psql_rows($db, "SELECT count(*) FROM pg_stat_activity"
                               . " WHERE wait_event_type = 'Lock' AND query LIKE '$like'");
    return $row->[0];
}

# 1. A statement writing messages of two hundred sessions while another
# transaction holds the first of them: it waits for that one, having taken
# none of the others. The sessions' rows are stored in the reverse order of
# their ids (updates leave them in no particular order), and so are the
# messages written.
my @sessions = sort map { $_->[0] } psql_rows($db,
    "INSERT INTO sessions (id, org_id, source_lang, target_lang)"
    . " SELECT g.id, o.id, 'en', 'es' FROM organizations o,"
    . " (SELECT chathistory_uuidv7() AS id FROM generate_series(1, 200)) g"
    . " WHERE o.name = 'default' ORDER BY g.id DESC RETURNING id");
my $first = shift @sessions;
my $holder = psql_child('BEGIN',
                        "SELECT 1 FROM sessions WHERE id = '$first' FOR NO KEY UPDATE",
                        'SELECT pg_sleep(3)', 'COMMIT');
ok(wait_until(5, sub { held($first) == 1 }), "another transaction holds the first session");

my $list = join ',', map { "'$_'" } $first, @sessions;
my $writer = psql_child("INSERT INTO messages (session_id, org_id, source_lang, target_lang,"
                        . " source_text) SELECT id, org_id, 'en', 'es', 'lock order'"
                        . " FROM sessions WHERE id IN ($list) ORDER BY id DESC");
ok(wait_until(5, sub { waiting_for_a_lock('INSERT INTO messages%') == 1 }),
   "the statement waits for a lock");
is(held(@sessions), 0, "having taken none of the sessions after the first");

waitpid $holder, 0;
waitpid $writer, 0;
is($? >> 8, 0, "the statement goes through when the first session is free");
is((psql_rows($db, "SELECT count(*) FROM sessions WHERE id IN ($list) AND message_count = 1"))[0][0],
   200, "each session counts its message");

# 2. A batch aborted by a deadlock. The transaction here holds session b,
# waits until the batch (messages of a and b) has taken a and waits for b,
# then asks for a: a deadlock, which PostgreSQL breaks by aborting the
# batch (its deadlock_timeout runs out first). The batch goes again, whole,
# and is written when this transaction is done.
my ($a, $b) = sort(new_sessions($db, 2));
my $backend = nginx_start(backend => 1, workers => 1);
my $nginx = nginx_start(db => $db, backend_port => $backend->{port}, workers => 1,
                        http => 'chathistory_capture_flush 300ms;');

my $crossing = psql_child('BEGIN', "SET LOCAL deadlock_timeout = '30s'",
                          "SELECT 1 FROM sessions WHERE id = '$b' FOR NO KEY UPDATE",
                          'DO $$ BEGIN FOR i IN 1 .. 200 LOOP EXIT WHEN EXISTS'
                          . ' (SELECT 1 FROM pg_locks l WHERE NOT l.granted'
                          . ' AND pg_backend_pid() = ANY (pg_blocking_pids(l.pid)));'
                          . ' PERFORM pg_sleep(0.025); END LOOP; END $$',
                          "SELECT 1 FROM sessions WHERE id = '$a' FOR NO KEY UPDATE",
                          'SELECT pg_sleep(0.5)', 'COMMIT');
ok(wait_until(5, sub { held($b) == 1 }), "another transaction holds session b");

my @ids;
for my $s ($a, $b) {
    my ($status, $res) = request_once($nginx, "GET /pipeline?session_id=$s&say=crossed");
    is($status, 200, "a message of each session captured");
    push @ids, $res->{msgid} if $res->{msgid};
}
is(scalar @ids, 2, "two messages announced");

waitpid $crossing, 0;
is(missing_messages($db, \@ids, 10), 0, "both messages are in the database");
my $log = nginx_log($nginx);
like($log, qr/a batch of 2 messages was aborted, sending it again: ERROR:  deadlock detected/,
     "the batch was aborted by the deadlock, and sent again");
unlike($log, qr/one by one/, "not written message by message");
is((psql_rows($db, "SELECT count(*) FROM sessions WHERE id IN ('$a', '$b')"
                   . " AND message_count = 1"))[0][0], 2, "each counted once");
nginx_stop($nginx);
unlike(nginx_log($nginx), qr/\[(alert|emerg)\]|lost/, "no alert, nothing lost");

# 3. Under load from four clients, half of it the API, half captured: the
# pool opens several connections, and every batch runs on the same one.
my @plain = new_sessions($db, 8);
$nginx = nginx_start(db => $db, backend_port => $backend->{port}, workers => 1,
                     log_level => 'debug',
                     http => 'chathistory_database_pool_size 4;'
                             . ' chathistory_capture_flush 5ms;');
my $pick = sub {
    my ($i, $c) = @_;
    my $s = $plain[($i + $c) % @plain];
    return $i % 2
        ? { tag => 'api', expect => qq("id":"$s"),
            req => "GET /api/sessions/$s HTTP/1.1\r\nHost: localhost\r\n\r\n" }
        : { tag => 'pipeline',
            req => "GET /pipeline?session_id=$s&say=$c.$i HTTP/1.1\r\nHost: localhost\r\n\r\n" };
};
my $load = load_start(port => $nginx->{port}, clients => 4, seconds => 3, pick => $pick);
my $st = load_wait($load);
my @answers = @{$st->{answers}};
my @captured = map { $_->[3] } grep { $_->[1] eq 'pipeline' && $_->[3] ne '-' } @answers;
ok(@answers > 100, "the load ran (" . scalar(@answers) . " requests)");
is(scalar(grep { $_->[2] ne '200' } @answers), 0, "every request answered 200");
is(missing_messages($db, \@captured, 10), 0, "every captured message is in the database");

my (%batch, %other);
for (split /\n/, nginx_log($nginx)) {
    next unless /"(chathistory_\w+)" on PostgreSQL backend (\d+)/;
    ($1 eq 'chathistory_message_record_batch' ? \%batch : \%other)->{$2}++;
}
my $batches = 0;
$batches += $_ for values %batch;
ok($batches >= 10, "the messages went in batches ($batches)");
ok(keys %other >= 2, "the other statements ran on several connections ("
                     . scalar(keys %other) . ")");
is(scalar(keys %batch), 1, "every batch ran on the same connection");
nginx_stop($nginx);

done_testing();
