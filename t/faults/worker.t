# The embedding pipeline under faults, while nginx records messages under
# load: an embedding server that fails every other call and hangs on some
# texts, and a worker killed with SIGKILL in the middle of its batches and
# started again, next to a second worker. Every message ends embedded or
# with a failed job that says why, and no message is embedded twice to a
# different vector (a trigger keeps every vector ever written).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib", "$FindBin::Bin/../worker/lib";
use ChwTest;
use Faults qw(nginx_start load_start load_wait missing_messages new_sessions
              backend_answers nginx_log);
use Test::More;
use Time::HiRes qw(time sleep);

setup_db();
my $dir = tmpdir();

sql(<<'SQL');
CREATE TABLE embedding_writes (message_id uuid, vector_md5 text, at timestamptz);
CREATE FUNCTION keep_embedding_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO embedding_writes VALUES (NEW.id, md5(NEW.embedding::text), now());
    RETURN NEW;
END $$;
CREATE TRIGGER keep_embedding_write AFTER UPDATE OF embedding ON messages
    FOR EACH ROW WHEN (NEW.embedding IS NOT NULL) EXECUTE FUNCTION keep_embedding_write();
SQL

# half the calls fail; a text with "poison" always fails; one with
# "hang" gets no answer for longer than the workers wait
my ($embed, undef, $fake) = fake_server('--fail-every', '2', '--fail-text', 'poison',
                          '--delay', '30', '--delay-text', 'hang');
my @common = ('--embedding-provider', 'ollama', '--embedding-url', $embed,
              '--embedding-timeout', '0.5', '--job-lease', '2', '--batch-size', '4',
              '--retry-base', '0.1', '--retry-max', '0.4', '--poll-interval', '0.2',
              '--stats-interval', '0', 'run');

my @sessions = Faults::new_sessions($DB_URL, 4);
my $backend = nginx_start(backend => 1, workers => 1);
my $nginx = nginx_start(db => $DB_URL, backend_port => $backend->{port});

# one message in twenty says "poison", one in twenty "hang"
my $pick = sub {
    my ($i, $c) = @_;
    my $say = $i % 20 == 3 ? 'poison' : $i % 20 == 13 ? 'hang' : "n$c-$i";
    my $s = $sessions[$i % @sessions];
    return { tag => $say =~ /^n/ ? 'plain' : $say,
             req => "POST /pipeline?session_id=$s&say=$say HTTP/1.1\r\n"
                    . "Host: localhost\r\nContent-Length: 4\r\n\r\nRIFF" };
};

my $b = worker_bg({}, "$dir/b.log", @common);
my $a = worker_bg({}, "$dir/a.log", @common);
my $load = load_start(port => $nginx->{port}, clients => 2, seconds => 6,
                      interval => 0.05, pick => $pick);

# SIGKILL the first worker, three times, while it holds a batch, and start
# it again each time
my ($kills, $mid_batch) = (0, 0);
for (1 .. 3) {
    sleep 1;
    my $mine = "SELECT count(*) FROM jobs WHERE status = 'running'"
               . " AND locked_by LIKE '%:$a'";
    wait_until(5, sub { sql($mine) > 0 });
    my $running = sql($mine);
    kill 'KILL', $a;
    wait_exit($a, 5);
    $kills++;
    $mid_batch++ if $running > 0;
    $a = worker_bg({}, "$dir/a.log", @common);
}

my $s = load_wait($load);
my %by = map { my $t = $_; $t => join(', ', map { "$_ $s->{by}{$t}{$_}" }
                                      sort keys %{$s->{by}{$t}}) } keys %{$s->{by}};
note "$s->{total} pipeline requests in " . sprintf('%.1f s', $s->{seconds}) . ': '
     . join '; ', map { "$_: $by{$_}" } sort keys %by;
note "the first worker killed with SIGKILL $kills times, $mid_batch of them"
     . " holding a batch";

my @ids = map { @{$s->{ids}{$_} // []} } qw(plain poison hang);
my $failed = grep { $_->[2] !~ /^2/ } @{$s->{answers}};
is $failed, 0, "every pipeline request answered 2xx ($s->{total})";
is missing_messages($DB_URL, \@ids, 10), 0,
   scalar(@ids) . ' messages accepted, none lost';
is backend_answers($backend), $s->{total}, 'the backend asked once per request';
cmp_ok $mid_batch, '>=', 2, 'killed mid-batch at least twice';

# the queue drains: the failing calls retried, the hanging ones given up
my $drain = time;
ok wait_until(40, sub { sql("SELECT count(*) FROM jobs"
                            . " WHERE status IN ('queued', 'running')") == 0 }),
   sprintf('every job done or failed (%.1f s after the load)', time - $drain)
    or diag map { "$_: " . join("\n", (split /\n/, slurp("$dir/$_"))[-6 .. -1]) . "\n" }
            qw(a.log b.log);
stop($_) for $a, $b;
# TERM: the server takes its hanging children along (KILL would leave them
# holding the test's output for thirty seconds)
kill 'TERM', $fake;

my %jobs = map { $_->[0] => $_->[1] } sql("SELECT status, count(*) FROM jobs GROUP BY 1");
note 'jobs: ' . join ', ', map { "$_ $jobs{$_}" } sort keys %jobs;

is sql("SELECT count(*) FROM messages m WHERE (SELECT count(*) FROM jobs j"
       . " WHERE j.kind = 'embed_message' AND j.payload->>'message_id' = m.id::text) <> 1"),
   0, 'one embedding job per message';

my @unfinished = sql(<<'SQL');
SELECT m.id, j.status, j.last_error, m.embedding IS NOT NULL FROM messages m
JOIN jobs j ON j.kind = 'embed_message' AND j.payload->>'message_id' = m.id::text
WHERE NOT ((m.embedding IS NOT NULL AND j.status = 'done')
           OR (j.status = 'failed' AND coalesce(j.last_error, '') <> ''))
SQL
is scalar(@unfinished), 0, 'every message embedded, or its job failed with its reason'
    or diag explain [@unfinished[0 .. 2]];

# a poisoned text fails every call it is in; a hanging one times out
for my $case (['poison', 'injected failure'], ['hang', 'Timeout'])
{
    my ($text, $reason) = @$case;
    my ($n, $failed, $said) = @{(sql("SELECT count(*), count(*) FILTER (WHERE"
        . " j.status = 'failed' AND j.last_error <> '' AND m.embedding IS NULL),"
        . " count(*) FILTER (WHERE j.last_error ~ '$reason') FROM messages m"
        . " JOIN jobs j ON j.payload->>'message_id' = m.id::text"
        . " WHERE m.source_text LIKE '%$text'"))[0]};
    ok $n > 0 && $n == $failed, "the $n \"$text\" messages failed, with a reason"
                                 . " ($said: \"$reason\")";
}

my ($plain) = sql("SELECT count(*), count(m.embedding) FROM messages m"
                  . " WHERE m.source_text ~ ' n[0-9]'");
note "$plain->[1] of $plain->[0] plain messages embedded (the others failed,"
     . " batched with a hanging text on every attempt)";
cmp_ok $plain->[1], '>', $plain->[0] * 0.5, 'most plain messages embedded';

my ($twice, $differ) = @{(sql("SELECT count(*) FILTER (WHERE n > 1),"
    . " count(*) FILTER (WHERE d > 1) FROM (SELECT message_id, count(*) n,"
    . " count(DISTINCT vector_md5) d FROM embedding_writes GROUP BY 1) w"))[0]};
my $kept = sql("SELECT count(*) FROM messages m JOIN jobs j ON j.payload->>'message_id'"
              . " = m.id::text WHERE j.status = 'failed' AND m.embedding IS NOT NULL");
note "$twice messages embedded more than once (a worker died after writing, before"
     . " its job was done); $kept embedded whose job failed (the same, on the last attempt)";
is $differ, 0, 'none embedded twice to a different vector';

my @bad = nginx_log($nginx) =~ /^.*\[(?:error|crit|alert|emerg)\].*$/mg;
is scalar(@bad), 0, 'nginx logged nothing at error or worse'
    or diag join "\n", @bad[0 .. 2];

done_testing;
