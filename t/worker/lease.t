# A worker killed with SIGKILL mid-batch: its jobs stay running until their
# lease passes, then another worker takes them and does them.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use ChwTest;
use Test::More;
use Time::HiRes qw(time);

setup_db();
my $dir = tmpdir();

make_messages(5, text => 'slow');
my ($slow) = fake_server('--delay', '30', '--delay-text', 'slow');
my ($fast) = fake_server();

my $a = worker_bg({}, "$dir/a.log", '--embedding-provider', 'ollama',
                  '--embedding-url', $slow, '--embedding-timeout', '60',
                  '--job-lease', '3', '--batch-size', '10', 'run');
ok wait_until(15, sub {
    sql("SELECT count(*) FROM jobs WHERE status = 'running'") == 5 }),
    'the first worker claimed the batch' or BAIL_OUT('no claim');
kill 'KILL', $a;
is wait_exit($a, 5), 128 + 9, 'killed with SIGKILL';
my $killed_at = time;

my $by_a = sql("SELECT DISTINCT locked_by FROM jobs");

my ($rc, $log) = worker('--embedding-provider', 'ollama',
                        '--embedding-url', $fast, '--job-lease', '3',
                        '--poll-interval', '0.2', 'run', '--drain');
is $rc, 0, 'the second worker drained the queue';
cmp_ok time - $killed_at, '>=', 2, 'not before the lease passed';

my @rows = sql("SELECT status, attempts, locked_by FROM jobs ORDER BY id");
is scalar(grep { $_->[0] eq 'done' } @rows), 5, 'every job done';
is scalar(grep { $_->[1] == 2 } @rows), 5, 'on a second attempt';
is scalar(grep { $_->[2] ne $by_a } @rows), 5, 'by the second worker';
is sql("SELECT count(*) FROM messages WHERE embedding IS NOT NULL"), 5,
    'every message embedded';

subtest 'a worker whose lease passed stores nothing' => sub {
    sql("DELETE FROM jobs");
    make_messages(3, text => 'late');
    my ($late) = fake_server('--delay', '6', '--delay-text', 'late');
    my $log = "$dir/late.log";
    my $pid = worker_bg({}, $log, '--embedding-provider', 'ollama',
                        '--embedding-url', $late, '--embedding-model',
                        'model-late', '--embedding-timeout', '30',
                        '--job-lease', '2', '--batch-size', '10', 'run');
    ok wait_until(15, sub {
        sql("SELECT count(*) FROM jobs WHERE status = 'running'") == 3 }),
        'the slow worker claimed the batch' or return;
    my ($rc) = worker('--embedding-provider', 'ollama', '--embedding-url',
                      $fast, '--embedding-model', 'model-quick',
                      '--job-lease', '2', '--poll-interval', '0.2',
                      'run', '--drain');
    is $rc, 0, 'another worker took the jobs after the lease and did them';
    ok wait_until(15, sub {
        slurp($log) =~ /job lease lost/ }),
        'the slow one finds its lease lost';
    is stop($pid), 0, 'stopped';
    my $text = slurp($log);
    my $lost = () = $text =~ /msg="job lease lost/g;
    is $lost, 3, 'for each job';
    unlike $text, qr/msg="job done"/, 'and calls none done';
    is sql("SELECT count(*) FROM messages WHERE source_text LIKE 'late%'"
           . " AND embedding_model = 'model-quick'"), 3,
        'the vectors are those of the worker holding the jobs';
    is sql("SELECT count(*) FROM jobs WHERE status = 'done'"
           . " AND attempts = 2"), 3, 'done once, on the second attempt';
};

subtest 'a dead worker on the last attempt: failed, not retaken' => sub {
    sql("DELETE FROM jobs");
    make_messages(1, text => 'last');
    sql("UPDATE jobs SET status = 'running', attempts = max_attempts,"
        . " locked_by = 'ghost:1', locked_until = now() - interval '1 s'"
        . " WHERE status = 'queued'");
    my ($rc) = worker('run', '--drain');
    is $rc, 0, 'drained';
    my @r = sql("SELECT status, last_error FROM jobs"
                . " WHERE locked_by = 'ghost:1'");
    is $r[0][0], 'failed', 'marked failed';
    like $r[0][1], qr/lease of ghost:1 expired/, 'with the reason';
};

done_testing;
