# The job loop: every job done exactly once by two concurrent workers,
# NOTIFY wakes an idle worker, stats are logged, SIGTERM finishes the batch
# in hand, a second SIGTERM releases it, SIGHUP reopens the log file.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use ChwTest;
use Test::More;
use Time::HiRes qw(sleep time);

setup_db();
my $dir = tmpdir();

subtest 'two workers, 400 jobs, each done exactly once' => sub {
    make_messages(400);
    my ($url) = fake_server('--delay', '0.02');
    my @o = ({}, "$dir/a.log", '--embedding-provider', 'ollama',
             '--embedding-url', $url, '--batch-size', '7', 'run', '--drain');
    my $a = worker_bg($o[0], "$dir/a.log", @o[2 .. $#o]);
    my $b = worker_bg($o[0], "$dir/b.log", @o[2 .. $#o]);
    is wait_exit($a, 60), 0, 'first worker drained and exited';
    is wait_exit($b, 60), 0, 'second worker drained and exited';

    is sql("SELECT count(*) FROM jobs WHERE status = 'done'"), 400,
        'all jobs done';
    is sql("SELECT count(*) FROM jobs WHERE attempts <> 1"), 0,
        'no job was claimed twice';
    is sql("SELECT count(*) FROM messages WHERE embedding IS NULL"
           . " OR embedding_model <> 'nomic-embed-text'"), 0,
        'every message embedded';

    my %done;
    for my $f ("$dir/a.log", "$dir/b.log") {
        my $text = slurp($f);
        $done{$1}++ while $text =~ /msg="job done" job=(\d+)/g;
    }
    is scalar(keys %done), 400, 'the logs name 400 jobs';
    is scalar(grep { $_ != 1 } values %done), 0, 'each job logged once';
    my @by = sql("SELECT count(DISTINCT locked_by) FROM jobs");
    is $by[0][0], 2, 'both workers did some of the work';
};

subtest 'two workers --drain exit together, long before the poll' => sub {
    make_messages(150);
    my ($url) = fake_server('--delay', '0.05');
    my @o = ('--embedding-provider', 'ollama', '--embedding-url', $url,
             '--batch-size', '5', '--poll-interval', '60', 'run', '--drain');
    my $t0 = time;
    my $a = worker_bg({}, "$dir/drain-a.log", @o);
    my $b = worker_bg({}, "$dir/drain-b.log", @o);
    is wait_exit($a, 90), 0, 'first worker drained and exited';
    is wait_exit($b, 90), 0, 'second worker drained and exited';
    my $took = time - $t0;
    # the one out of jobs first waits for the other's: woken by its NOTIFY
    cmp_ok $took, '<', 30, sprintf('both out in %.1f s (poll 60 s)', $took);
    is sql("SELECT count(*) FROM jobs WHERE status = 'done' AND attempts = 1"),
        550, 'all jobs done once';
};

subtest 'NOTIFY wakes an idle worker; stats' => sub {
    my $log = "$dir/notify.log";
    my $pid = worker_bg({}, $log, '--poll-interval', '60',
                        '--stats-interval', '0.5', 'run');
    ok wait_until(10, sub { slurp($log) =~ /queue|cleanup done/ }),
        'worker idle';
    sleep 0.3;
    make_messages(3);
    ok wait_until(5, sub {
        sql("SELECT count(*) FROM jobs WHERE status = 'done'") == 553 }),
        'new jobs done at once, long before the poll interval';
    ok wait_until(5, sub { slurp($log) =~ /msg=stats .*queued=\d+ .*lag_ms=\d+/ }),
        'stats line with queue depth and lag';

    rename $log, "$log.1";
    kill 'HUP', $pid;
    is stop($pid), 0, 'SIGTERM: exit 0';
    like slurp("$log.1"), qr/msg="log reopened"/, 'SIGHUP logged';
};

subtest 'log file reopened on SIGHUP' => sub {
    my $log = "$dir/file.log";
    my $pid = worker_bg({}, "/dev/null", '--log-file', $log, 'run');
    ok wait_until(10, sub { slurp($log) =~ /worker starting/ }),
        'logs to --log-file';
    rename $log, "$log.1";
    kill 'HUP', $pid;
    ok wait_until(5, sub { slurp($log) =~ /log reopened/ }),
        'a new file after SIGHUP';
    is stop($pid), 0, 'stopped';
    like slurp($log), qr/worker stopped/, 'the rest goes to the new file';
};

subtest 'SIGTERM finishes the batch in hand' => sub {
    make_messages(4, text => 'slow');
    my ($url) = fake_server('--delay', '2');
    my $log = "$dir/term.log";
    my $pid = worker_bg({}, $log, '--embedding-provider', 'ollama',
                        '--embedding-url', $url, '--batch-size', '10',
                        '--embedding-timeout', '10', 'run');
    ok wait_until(10, sub {
        sql("SELECT count(*) FROM jobs WHERE status = 'running'") == 4 }),
        'batch claimed' or return;
    kill 'TERM', $pid;
    is wait_exit($pid, 15), 0, 'exited after the batch';
    is sql("SELECT count(*) FROM jobs WHERE status <> 'done'"), 0,
        'the batch was finished, not dropped';
};

subtest 'a second SIGTERM aborts and releases the batch' => sub {
    make_messages(3, text => 'slower');
    my ($url) = fake_server('--delay', '5');
    my $log = "$dir/term2.log";
    my $pid = worker_bg({}, $log, '--embedding-provider', 'ollama',
                        '--embedding-url', $url, '--batch-size', '10',
                        '--embedding-timeout', '20', 'run');
    ok wait_until(10, sub {
        sql("SELECT count(*) FROM jobs WHERE status = 'running'") == 3 }),
        'batch claimed' or return;
    kill 'TERM', $pid;
    sleep 0.3;
    kill 'TERM', $pid;
    is wait_exit($pid, 4), 0, 'exited at once';
    is sql("SELECT count(*) FROM jobs WHERE status = 'queued'"
           . " AND attempts = 0"), 3, 'jobs released, attempt not counted';
    like slurp($log), qr/msg="job released"/, 'released jobs logged';
};

done_testing;
