# Retries with backoff, failure after max_attempts keeping the last error,
# and an unknown or malformed job.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use ChwTest;
use Test::More;

setup_db();

subtest 'a flaky server: retried until done' => sub {
    make_messages(1);
    my ($url) = fake_server('--fail-first', '3');
    my ($rc, $log) = worker('--embedding-provider', 'ollama',
                            '--embedding-url', $url, '--retry-base', '0.2',
                            '--poll-interval', '0.1', 'run', '--drain');
    is $rc, 0, 'drained';
    is sql("SELECT count(*) FROM jobs WHERE status = 'done'"
           . " AND attempts = 4 AND last_error IS NULL"), 1,
        'done on the fourth attempt';
    my @d = $log =~ /retry_in=([\d.]+)/g;
    is scalar(@d), 3, 'three retries logged';
    ok $d[0] >= 0.1 && $d[0] <= 0.2 && $d[1] >= 0.2 && $d[1] <= 0.4
       && $d[2] >= 0.4 && $d[2] <= 0.8, "delays double, with jitter: @d";
    sql("DELETE FROM jobs");
};

subtest 'a poisoned message: failed after max_attempts' => sub {
    make_messages(2, text => 'fine');
    make_messages(1, text => 'poison');
    sql("UPDATE jobs SET max_attempts = 3");
    my ($url) = fake_server('--fail-text', 'poison');
    my ($rc, $log) = worker('--embedding-provider', 'ollama',
                            '--embedding-url', $url, '--retry-base', '0.05',
                            '--batch-size', '1', '--poll-interval', '0.1',
                            'run', '--drain');
    is $rc, 0, 'drained';
    my @f = sql("SELECT attempts, last_error, locked_until FROM jobs"
                . " WHERE status = 'failed'");
    is scalar(@f), 1, 'one job failed';
    is $f[0][0], 3, 'after max_attempts';
    like $f[0][1], qr/answered 500.*injected failure/, 'keeps the last error';
    is $f[0][2], '', 'no lease left';
    is sql("SELECT count(*) FROM jobs WHERE status = 'done'"), 2,
        'the others done';
    like $log, qr/level=error msg="job failed"/, 'failure logged as error';
    sql("DELETE FROM jobs");
};

subtest 'unknown kind and bad payload fail, the loop goes on' => sub {
    sql("INSERT INTO jobs (kind, payload, max_attempts) VALUES"
        . " ('frobnicate', '{}', 2),"
        . " ('embed_message', '{\"message_id\": \"../../etc\"}', 1),"
        . " ('delete_audio', '{\"session_id\": 42}', 1)");
    my ($rc) = worker('--retry-base', '0', 'run', '--drain');
    is $rc, 0, 'drained';
    my %err = map { $_->[0] => $_->[1] }
        sql("SELECT kind, last_error FROM jobs WHERE status = 'failed'");
    like $err{frobnicate}, qr/unknown job kind/, 'unknown kind';
    like $err{embed_message}, qr/no valid "message_id"/, 'bad message id';
    like $err{delete_audio}, qr/no valid "session_id"/, 'bad session id';
};

subtest 'a message deleted before its job runs: done' => sub {
    sql("DELETE FROM jobs");
    my $s = make_messages(2);
    sql("DELETE FROM sessions WHERE id = '$s'");
    my ($rc) = worker('run', '--drain');
    is $rc, 0, 'drained';
    is sql("SELECT count(*) FROM jobs WHERE status = 'done'"), 2,
        'nothing to do is done';

    sql("DELETE FROM jobs");
    my $gone = make_messages(3, text => 'gone');
    make_messages(3, text => 'kept');
    sql("DELETE FROM sessions WHERE id = '$gone'");
    ($rc) = worker('run', '--drain');
    is $rc, 0, 'a batch of gone and live messages: drained';
    is sql("SELECT count(*) FROM jobs WHERE status = 'done'"), 6,
        'every job done';
    is sql("SELECT count(*) FROM messages WHERE source_text LIKE 'kept%'"
           . " AND embedding_model = 'hash-v1'"), 3,
        'the live messages embedded';
};

done_testing;
