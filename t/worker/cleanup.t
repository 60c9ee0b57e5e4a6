# Retention and deletion: expired sessions and their audio go, orphaned
# audio directories are swept, delete_audio jobs are carried out, and
# nothing else is touched (live sessions, foreign names, symlink targets).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use ChwTest;
use File::Path qw(make_path);
use Test::More;

setup_db();
my $audio = tmpdir();
my $outside = tmpdir();

sub audio_dir {
    my ($name, $files, $age) = @_;
    make_path("$audio/$name");
    for my $i (1 .. $files) {
        open my $fh, '>', "$audio/$name/$i.opus" or die $!;
        print $fh "OggS";
    }
    utime time - $age, time - $age, "$audio/$name" if $age;
}

my $expired = make_messages(3, expires => "now() - interval '1 hour'",
                            no_jobs => 1);
my $live = make_messages(2, expires => "now() + interval '1 day'",
                         no_jobs => 1);
my $forever = make_messages(1, no_jobs => 1);
audio_dir($expired, 3);
audio_dir($live, 2);
audio_dir($forever, 1, 3600);

my $orphan = '01a2aaaa-0000-7000-8000-000000000001';
my $young = '01a2aaaa-0000-7000-8000-000000000002';
my $link = '01a2aaaa-0000-7000-8000-000000000003';
audio_dir($orphan, 2, 3600);
audio_dir($young, 1);
audio_dir('not-a-uuid', 1, 3600);
make_path("$outside/keep");
open my $fh, '>', "$outside/keep/precious" or die $!;
close $fh;
symlink "$outside/keep", "$audio/$link" or die $!;

sql("INSERT INTO jobs (kind, payload, status, updated_at) VALUES"
    . " ('embed_message', '{}', 'done', now() - interval '8 days'),"
    . " ('embed_message', '{}', 'done', now() - interval '1 day'),"
    . " ('embed_message', '{}', 'failed', now() - interval '30 days')");

my ($rc, $err) = worker('--audio-storage-path', $audio, 'cleanup', '--once');
is $rc, 0, 'cleanup --once: exit 0';
like $err, qr/msg="cleanup done" sessions=1 messages=3 orphan_dirs=1 files=5 jobs=1/,
    'counts logged';

is sql("SELECT count(*) FROM sessions WHERE id = '$expired'"), 0,
    'expired session deleted';
is sql("SELECT count(*) FROM messages WHERE session_id = '$expired'"), 0,
    'with its messages';
ok !-e "$audio/$expired", 'and its audio';
ok -e "$audio/$live/2.opus" && -e "$audio/$forever/1.opus",
    'live sessions and their audio kept';
is sql("SELECT count(*) FROM messages"), 3, 'their messages kept';
ok !-e "$audio/$orphan", 'an old orphaned directory swept';
ok -e "$audio/$young/1.opus", 'a young one left alone (orphan_age)';
ok -e "$audio/not-a-uuid/1.opus", 'a foreign name left alone';
ok -l "$audio/$link" && -e "$outside/keep/precious",
    'a symlink is not followed by the sweep';
is sql("SELECT count(*) FROM jobs"), 2,
    'done jobs past jobs_keep_days deleted, failed ones kept';

subtest 'delete_audio jobs' => sub {
    sql("DELETE FROM jobs");
    audio_dir('01a2bbbb-0000-7000-8000-000000000001', 2);
    sql("INSERT INTO jobs (kind, payload) VALUES"
        . " ('delete_audio', '{\"session_id\":"
        . " \"01a2bbbb-0000-7000-8000-000000000001\", \"org_id\": \"x\"}'),"
        . " ('delete_audio', '{\"session_id\": \"$link\"}'),"
        . " ('delete_audio', '{\"session_id\":"
        . " \"01a2bbbb-0000-7000-8000-00000000dead\"}')");
    my ($rc, $err) = worker('--audio-storage-path', $audio,
                            '--cleanup-interval', '0', 'run', '--drain');
    is $rc, 0, 'drained';
    is sql("SELECT count(*) FROM jobs WHERE status = 'done'"), 3,
        'all done, a missing directory too';
    ok !-e "$audio/01a2bbbb-0000-7000-8000-000000000001", 'directory removed';
    like $err, qr/msg="session audio removed" session=01a2bbbb-\S+ files=2/,
        'logged with the file count';
    ok !-e "$audio/$link" && -e "$outside/keep/precious",
        'a symlink is removed, its target untouched';
    ok -e "$audio/$live/2.opus", 'other sessions untouched';
};

subtest 'one cleaner at a time' => sub {
    # CHW_LOCK_CLEANUP ("chathcln") in chathistory_worker.h
    open my $holder, '|-', 'psql', $DB_URL, '-X', '-q', '-o', '/dev/null'
        or die $!;
    print $holder "SELECT pg_advisory_lock(7163082359928220782);\n"
                . "SELECT pg_sleep(4);\n";
    $holder->flush;
    sleep 1;
    my ($rc, $err) = worker('--audio-storage-path', $audio, 'cleanup',
                            '--once');
    is $rc, 0, 'exit 0';
    like $err, qr/cleanup skipped: another worker is at it/,
        'skipped while the lock is held';
    close $holder;
};

done_testing;
