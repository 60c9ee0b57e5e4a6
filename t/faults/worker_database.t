# The worker against a database that does not answer: a TCP proxy
# (t/fake/tcp-proxy.pl) between the worker and PostgreSQL that passes,
# stalls (accepts and forwards nothing, as a black-holed port, a hung proxy
# or a partition) and resets. Every command ends within its bound with a
# message that says so; SIGTERM ends a waiting worker within about a
# second; a running worker comes back by itself when the database does,
# after a stall or a reset, with growing delays between its attempts, and
# does the jobs queued meanwhile. The bounds are set through the
# environment, so that a worker that does not know them hangs (and fails)
# instead of refusing an unknown option.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib", "$FindBin::Bin/../worker/lib";
use ChwTest;
use POSIX ();
use Sys::Hostname ();
use Test::More;
use Time::HiRes qw(time sleep);

setup_db();
my $dir = tmpdir();

my ($host, $port) = $DB_URL =~ m{^postgres(?:ql)?://[^@/]*@?([^:/?]+):(\d+)}
    ? ($1, $2)
    : (($DB_URL =~ /host=(\S+)/)[0] // '127.0.0.1', ($DB_URL =~ /port=(\d+)/)[0] // 5432);

my $control = "$dir/control";
my $proxy_pid = fork // die "fork: $!";
if ($proxy_pid == 0) {
    no warnings 'exec';
    exec $^X, "$FindBin::Bin/../fake/tcp-proxy.pl", '--to', "$host:$port",
        '--port-file', "$dir/port", '--control', $control, '--log', "$dir/proxy.log";
    POSIX::_exit(127);
}
END { kill 'TERM', $proxy_pid if $proxy_pid; }
wait_until(10, sub { -s "$dir/port" }) or die "the proxy did not start";
chomp(my $pport = slurp("$dir/port"));

# the suite's database through the proxy, in the form of $DB_URL, with a
# password (the test cluster trusts loopback: it is never asked for) that
# the log must not show
my $secret = 's3cret-pw';
sub via_proxy {
    my ($extra) = @_;
    if ($DB_URL =~ m{^(postgres(?:ql)?://)(?:([^:@/]*)(?::[^@/]*)?@)?[^/?]*(.*)$}) {
        my $u = "$1" . ($2 // 'postgres') . ":$secret\@127.0.0.1:$pport$3";
        return $extra ? $u . ($u =~ /\?/ ? '&' : '?') . $extra : $u;
    }
    return "$DB_URL host=127.0.0.1 port=$pport password=$secret" . ($extra ? " $extra" : '');
}

# sets the proxy's mode; returns once it is in force
my $serial = 0;
sub proxy {
    my ($mode) = @_;
    $serial++;
    open my $fh, '>', "$control.tmp" or die "$!";
    print $fh "$mode $serial\n";
    close $fh;
    rename "$control.tmp", $control or die "$!";
    wait_until(5, sub { slurp("$control.ack") eq "$mode $serial\n" })
        or die "the proxy did not take \"$mode\"";
}

# runs the worker through the proxy: (exit status, seconds, stderr)
my $oneshot = '';
sub timed {
    my ($env, @args) = @_;
    my $t0 = time;
    my ($rc, $err) = worker({ env => $env, timeout => 15 }, @args);
    $oneshot .= $err;
    return ($rc, time - $t0, $err);
}

my $url = via_proxy('connect_timeout=2');
my $env = { CHATHISTORY_DATABASE_TIMEOUT => 1 };

subtest 'through a passing proxy the commands work' => sub {
    proxy('pass');
    my ($rc, undef, $err) = timed($env, '--database-url', $url, 'org', 'list');
    is $rc, 0, 'org list' or diag $err;
    ($rc, undef, $err) = timed($env, '--database-url', $url, 'migrate', '--status');
    is $rc, 0, 'migrate --status' or diag $err;
};

subtest 'one-shot commands against a stalled proxy end with a message' => sub {
    proxy('stall');
    for my $cmd (['migrate'], ['migrate', '--status'], ['org', 'list'],
                 ['org', 'create', 'stalled'], ['apikey', 'list'],
                 ['apikey', 'list', '--org', 'default'], ['cleanup', '--once'],
                 ['reembed'])
    {
        my ($rc, $took, $err) = timed($env, '--database-url', $url, @$cmd);
        my $name = join ' ', @$cmd;
        is $rc, 1, "$name: exit status 1";
        cmp_ok $took, '<', 5, sprintf("$name: ended in %.1f s (connect_timeout=2)", $took);
        like $err, qr/database did not answer within 2 s/, "$name: says so"
            or diag $err;
    }

    # without connect_timeout in the URL: 10 s
    my ($rc, $took, $err) = timed($env, '--database-url', via_proxy(), 'org', 'list');
    is $rc, 1, 'no connect_timeout: exit status 1';
    ok $took > 9 && $took < 14, sprintf('ended in %.1f s: 10 s by default', $took);
    like $err, qr/database did not answer within 10 s/, 'says so';
    proxy('pass');
};

subtest 'a statement waiting on a lock: statement_timeout' => sub {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        no warnings 'exec';
        exec 'psql', $DB_URL, '-X', '-q', '-c', 'BEGIN; LOCK TABLE organizations;'
                                               . ' SELECT pg_sleep(6); COMMIT;';
        POSIX::_exit(127);
    }
    ok wait_until(5, sub { sql("SELECT count(*) FROM pg_locks l JOIN pg_class c"
                               . " ON c.oid = l.relation WHERE c.relname ="
                               . " 'organizations' AND l.granted AND l.mode ="
                               . " 'AccessExclusiveLock'") > 0 }), 'organizations locked';
    my ($rc, $took, $err) = timed($env, '--database-url', $url, 'org', 'list');
    is $rc, 1, 'org list fails';
    cmp_ok $took, '<', 4, sprintf('within %.1f s (database_timeout=1)', $took);
    like $err, qr/statement timeout|did not answer within 1 s/, 'says why' or diag $err;
    waitpid $pid, 0;
};

subtest 'run against a stalled proxy: SIGTERM ends it within a second' => sub {
    proxy('stall');
    my $log = "$dir/run-stall.log";
    my $pid = worker_bg({ env => $env }, $log, '--database-url',
                        via_proxy('connect_timeout=30'), 'run');
    sleep 1.5;
    my $t0 = time;
    kill 'TERM', $pid;
    my $rc = wait_exit($pid, 10);
    my $took = time - $t0;
    ok defined $rc, 'it exits' or diag slurp($log);
    cmp_ok $took, '<', 2, sprintf('%.2f s after SIGTERM, connecting', $took);
    proxy('pass');

    # connected, then the database goes silent while it waits for an answer
    $log = "$dir/run-stall2.log";
    $pid = worker_bg({ env => { CHATHISTORY_DATABASE_TIMEOUT => 60 } }, $log,
                     '--database-url', $url, '--poll-interval', '0.2',
                     '--stats-interval', '0', 'run');
    ok wait_until(10, sub { slurp($log) =~ /connected to PostgreSQL/ }), 'connected';
    sleep 0.5;
    proxy('stall');
    sleep 1.5;
    $t0 = time;
    kill 'TERM', $pid;
    $rc = wait_exit($pid, 10);
    $took = time - $t0;
    ok defined $rc, 'it exits' or diag slurp($log);
    cmp_ok $took, '<', 2, sprintf('%.2f s after SIGTERM, waiting for an answer', $took);
    proxy('pass');
};

# the worker used by the next subtests, through the proxy
my $log = "$dir/run.log";
my @run = ('--database-url', $url, '--poll-interval', '0.2',
           '--stats-interval', '0', 'run');
my $pid = worker_bg({ env => $env }, $log, @run);
ok wait_until(10, sub { slurp($log) =~ /connected to PostgreSQL/ }), 'run connected';

sub job_done_for {
    my ($session) = @_;
    return sql("SELECT count(*) FROM jobs j JOIN messages m ON"
               . " j.payload->>'message_id' = m.id::text WHERE"
               . " m.session_id = '$session' AND j.status = 'done'"
               . " AND m.embedding IS NOT NULL");
}

subtest 'a running worker survives a stall and does the jobs queued meanwhile' => sub {
    my $s = make_messages(1);
    ok wait_until(10, sub { job_done_for($s) == 1 }), 'a job done through the proxy';

    proxy('stall');
    my $during = make_messages(1);
    ok wait_until(10, sub { slurp($log) =~ /did not answer within 1 s/ }),
        'it gives up on the silent connection' or diag slurp($log);
    # as if a claim given up on had gone through after all
    my $orphan = make_messages(1);
    my $me = (Sys::Hostname::hostname() =~ s/^(.{1,63}).*/$1/r) . ":$pid";
    sql("UPDATE jobs SET status = 'running', locked_by = '$me', attempts = 1,"
        . " locked_until = now() + interval '300 s' WHERE payload->>'message_id'"
        . " IN (SELECT id::text FROM messages WHERE session_id = '$orphan')");
    sleep 3;
    is job_done_for($during), 0, 'nothing done while stalled';
    ok kill(0, $pid), 'still running';

    proxy('pass');
    my $after = make_messages(1);
    ok wait_until(15, sub { job_done_for($during) == 1 && job_done_for($after) == 1 }),
        'back: the jobs queued during and after the stall are done'
        or diag slurp($log);
    like slurp($log), qr/reconnected to PostgreSQL/, 'it says it reconnected';
    ok wait_until(5, sub { job_done_for($orphan) == 1 }),
        'a job left running under its name: queued again at once, done';
    # the orphan, and the job made during the stall too when the claim the
    # worker gave up on had reached the database before the proxy stalled
    like slurp($log), qr/jobs of the lost connection queued again" jobs=[12]\b/,
        'it says so';
};

subtest 'resets: it reconnects, with growing delays while refused' => sub {
    my $before = () = slurp($log) =~ /reconnected to PostgreSQL/g;
    proxy('reset');
    my $s = make_messages(1);
    ok wait_until(10, sub { job_done_for($s) == 1 }), 'after a reset, a job done'
        or diag slurp($log);
    my $after = () = slurp($log) =~ /reconnected to PostgreSQL/g;
    is $after, $before + 1, 'one reconnection';

    my $mark = length slurp($log);
    proxy('refuse');
    sleep 0.3;
    make_messages(1);
    ok wait_until(12, sub { (() = substr(slurp($log), $mark)
                                =~ /next connection attempt/g) >= 4 }),
        'four attempts refused' or diag substr(slurp($log), $mark);
    my @in = substr(slurp($log), $mark) =~ /next connection attempt" in=([\d.]+)/g;
    note "delays: @in";
    my @bound = (1, 2, 4, 8);
    my $grow = grep { $in[$_] >= $bound[$_] / 2 - 0.05 && $in[$_] <= $bound[$_] + 0.05 }
               0 .. 3;
    is $grow, 4, 'delays of 1, 2, 4, 8 s, half of each random';

    proxy('pass');
    my $late = make_messages(1);
    ok wait_until(20, sub { job_done_for($late) == 1 }), 'back: a job done'
        or diag substr(slurp($log), $mark);
};

my $t0 = time;
my $rc = stop($pid);
is $rc, 0, sprintf('SIGTERM: exit status 0 after %.2f s', time - $t0);
my $logs = join '', $oneshot, map { slurp($_) } glob("$dir/*.log");
unlike $logs, qr/\Q$secret\E/, 'the password is in no log';

done_testing;
