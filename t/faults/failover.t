# A primary and its streaming standby (initdb, pg_basebackup -R) on
# loopback, two nginx (two hosts: each its own spool, one audio directory)
# and two workers, all with a multi-host database_url
# (target_session_attrs=read-write); the nginx also read search from the
# standby (chathistory_database_replica_url). Under captured and API load
# the primary is stopped and the standby promoted: every captured message
# is in the new primary exactly once, the API answers again within 2 s of
# the promotion, searches on the replica give only rows of the key's
# organization, nothing fails but the 503s of the API while there is no
# primary, and the workers do the jobs of the messages on the new primary.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Faults;
use File::Temp ();
use POSIX ();
use JSON::PP ();
use Test::More;
use Time::HiRes qw(time sleep);
use Chathistory::Helpers qw(free_port);

my $worker = $ENV{CHATHISTORY_WORKER};
my $pgbin = $ENV{PGBIN} // '/usr/lib/postgresql/15/bin';
plan skip_all => 'CHATHISTORY_WORKER not set (t/README.md)' unless $worker && -x $worker;
plan skip_all => "no $pgbin/pg_basebackup" unless -x "$pgbin/pg_basebackup";

my $pg = "$ROOT/scripts/pg";
my $tmp = File::Temp::tempdir('faults-failover-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp;
my ($pport, $sport) = (free_port(), free_port());
my (@workers, @clusters);

sub run { system(@_) == 0 or BAIL_OUT("failed: @_") }
sub owner { $> == 0 ? ('runuser', '-u', 'postgres', '--') : () }

END {
    local $?;
    kill 'TERM', @workers if @workers;
    waitpid $_, 0 for @workers;
    system("$pg stop $_ >/dev/null 2>&1") for @clusters;
}

# the primary, migrated and seeded, then the standby copied from it
run("$pg init $tmp/p $pport >/dev/null");
push @clusters, "$tmp/p";
run("$pg start $tmp/p -c wal_level=replica -c max_wal_senders=5 >/dev/null");
run("$pg createdb $tmp/p chathistory >/dev/null");
my $purl = "postgresql://postgres\@127.0.0.1:$pport/chathistory";
my $surl = "postgresql://postgres\@127.0.0.1:$sport/chathistory";
run("$worker migrate --database-url '$purl' --migrations-dir '$ROOT/migrations' >/dev/null 2>&1");

my ($A, $B) = ('0190a000-0000-7000-8000-0000000f0a00', '0190a000-0000-7000-8000-0000000f0b00');
psql_rows($purl, "INSERT INTO organizations (id, name) VALUES ('$A', 'failover-a'),"
                 . " ('$B', 'failover-b')");
# a searchable message in a session of each organization
for my $org ($A, $B) {
    psql_rows($purl, "WITH s AS (INSERT INTO sessions (id, org_id, source_lang, target_lang)"
        . " VALUES (chathistory_uuidv7(), '$org', 'en', 'pt-BR') RETURNING id, org_id)"
        . " INSERT INTO messages (id, session_id, org_id, source_lang, target_lang,"
        . " source_text, translated_text) SELECT chathistory_uuidv7(), id, org_id, 'en',"
        . " 'pt-BR', 'the train to Lisbon leaves at nine', 'o trem' FROM s");
}
chomp(my $key = `$worker --database-url '$purl' apikey create --org failover-a --name fo 2>/dev/null`);
like $key, qr/^chk_/, 'a key of organization A';
my @sessions = map { $_->[0] } psql_rows($purl, "INSERT INTO sessions (id, org_id,"
    . " source_lang, target_lang) SELECT chathistory_uuidv7(), '$A', 'en', 'pt-BR'"
    . " FROM generate_series(1, 8) RETURNING id");
my $ours = join ',', map { "'$_'" } @sessions;

mkdir "$tmp/s";
chmod 0700, "$tmp/s";
system('chown', 'postgres:postgres', "$tmp/s") if $> == 0;
run(owner(), "$pgbin/pg_basebackup", '-D', "$tmp/s/data", '-h', '127.0.0.1', '-p', $pport,
    '-U', 'postgres', '-R', '-X', 'stream', '-c', 'fast');
open my $pf, '>', "$tmp/s/port" or die $!;
print $pf "$sport\n";
close $pf;
push @clusters, "$tmp/s";
run("$pg start $tmp/s >/dev/null");
ok wait_until(20, sub { (psql_rows($surl, "SELECT count(*) FROM organizations"
                                          . " WHERE name = 'failover-a'"))[0][0] == 1 }),
   'the standby streams from the primary';

# every part names both hosts; libpq takes the writable one
my $multi = "postgresql://postgres\@127.0.0.1:$pport,127.0.0.1:$sport/chathistory"
            . "?target_session_attrs=read-write&connect_timeout=2";

for my $n (1, 2) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>', "$tmp/worker$n.log" or POSIX::_exit(127);
        open STDOUT, '>', '/dev/null' or POSIX::_exit(127);
        exec { $worker } $worker, '--database-url', $multi, '--poll-interval', '1',
             '--database-timeout', '5', 'run'
            or POSIX::_exit(127);
    }
    push @workers, $pid;
}

my $audio = "$tmp/audio";
mkdir $audio;
chmod 0777, $audio;
my @nginx = map {
    nginx_start(db => $multi, backend_port => $_->{port}, workers => 1, log_level => 'info',
        http => "chathistory_database_replica_url \"$surl\";"
                . ' chathistory_database_replica_max_lag 5s;'
                . ' chathistory_database_pool_size 4; chathistory_capture_session_cache 0;'
                . ' chathistory_database_connect_timeout 1s;'
                . " chathistory_audio_storage_path $audio;"
                . ' chathistory_auth_cache zone=keys:1m valid=60s invalid=5s;',
        server => 'location /v1/ { chathistory_auth api_key; chathistory_api; }'
                  . ' location = /metrics { chathistory_status; }')
} map { nginx_start(backend => 1, workers => 1) } 1, 2;

my $search = sub {
    my ($n) = @_;
    my ($status, $res) = request_once($n, 'POST /v1/search',
        '{"query": "Lisbon", "mode": "keyword"}', Authorization => "Bearer $key");
    my $hits = $status == 200 ? JSON::PP::decode_json($res->{body})->{data} : [];
    return ($status, $hits);
};
my $scoped = sub {
    my ($when) = @_;
    for my $n (@nginx) {
        my ($status, $hits) = $search->($n);
        is $status, 200, "search $when on $n->{port}";
        ok @$hits && !grep({ $_->{session}{org_id} ne $A } @$hits),
           scalar(@$hits) . " hits, all of organization A";
    }
};
ok wait_until(10, sub { nginx_log($nginx[0]) =~ /replica at .* serves reads/
                        && nginx_log($nginx[1]) =~ /replica at .* serves reads/ }),
   'both nginx read from the replica';
$scoped->('before');
# a search's statement begins so (pg_stat_activity keeps its start)
my ($on_standby) = psql_rows($surl, "SELECT count(*) FROM pg_stat_activity WHERE"
    . " application_name = 'nginx chathistory' AND query LIKE 'SELECT (SELECT row_to_json(x)"
    . " FROM (SELECT (SELECT row_to_json(x) FROM (SELECT m.id%'");
cmp_ok $on_standby->[0], '>', 0, 'the searches ran on the standby';

# a third of the requests each: the pipeline, a session from the primary,
# a search on the replica
my $pick = sub {
    my ($i, $c) = @_;
    my $s = $sessions[($i + $c) % @sessions];
    my $body = '{"query": "Lisbon", "mode": "keyword"}';
    return ({ tag => 'pipeline', req => "POST /pipeline?session_id=$s HTTP/1.1\r\n"
                                       . "Host: localhost\r\nContent-Length: 4\r\n\r\nRIFF" },
            { tag => 'api', req => "GET /api/sessions/$s HTTP/1.1\r\nHost: localhost\r\n\r\n" },
            { tag => 'search', req => "POST /v1/search HTTP/1.1\r\nHost: localhost\r\n"
                                      . "Authorization: Bearer $key\r\nContent-Length: "
                                      . length($body) . "\r\n\r\n$body" })[$i % 3];
};
my $t0 = time;
my @loads = map { load_start(port => $_->{port}, clients => 2, seconds => 22,
                             interval => 0.01, pick => $pick) } @nginx;
sleep 6;
my $stopping = time;
run("$pg stop $tmp/p >/dev/null");
my $stopped = time;
sleep 1.5;
my $promoting = time;
psql_rows($surl, 'SELECT pg_promote(true, 30)');
my $promoted = time;
$scoped->('right after the promotion');
my @s = map { load_wait($_) } @loads;

my (%by, @answers, @ids);
for my $s (@s) {
    for my $tag (keys %{$s->{by}}) {
        $by{$tag}{$_} += $s->{by}{$tag}{$_} for keys %{$s->{by}{$tag}};
    }
    push @answers, @{$s->{answers}};
    push @ids, @{$s->{ids}{pipeline} // []};
}
note sprintf 'no primary from %.2f s (stop took %.2f s) to %.2f s (promotion took %.2f s)',
             $stopping - $t0, $stopped - $stopping,
             $promoted - $t0, $promoted - $promoting;
note "$_: " . join(', ', map { "$_ $by{$_}" } sort keys %{$by{$_}}) for sort keys %by;

my @api = grep { $_->[1] eq 'api' } @answers;
is scalar(grep { $_->[2] ne '200' && $_->[2] ne '503' } @api), 0, 'the API answers 200 or 503';
is scalar(grep { $_->[2] ne '200' && ($_->[0] < $stopping || $_->[0] > $promoted + 2) } @api), 0,
   'and 503 only while there is no primary (and up to 2 s after the promotion)';
my ($first) = grep { $_->[0] >= $promoted && $_->[2] eq '200' } @api;
my $recovery = $first ? $first->[0] - $promoted : 99;
cmp_ok $recovery, '<', 2, sprintf 'the API is back %.3f s after the promotion', $recovery;
cmp_ok scalar(grep { $_->[0] > $promoted + 2 } @api), '>', 20, 'API requests after that';

my @search = grep { $_->[1] eq 'search' } @answers;
is scalar(grep { $_->[2] ne '200' && ($_->[2] ne '503' || $_->[0] < $stopping
                                      || $_->[0] > $promoted + 2) } @search), 0,
   scalar(@search) . ' searches, 200 (or 503 while there is no primary)';
my @pipe = grep { $_->[1] eq 'pipeline' } @answers;
is scalar(grep { $_->[2] !~ /^2/ } @pipe), 0, scalar(@pipe) . ' pipeline requests, every one 2xx';
my $during = grep { $_->[0] > $stopped && $_->[0] < $promoted } @pipe;
cmp_ok $during, '>', 10, "$during of them while there was no primary";
is scalar(@ids), scalar(@pipe), 'every one announced a message id';
$scoped->('at the end');

# the new primary has every message, once
my $lost = missing_messages($surl, \@ids, 60);
my ($rows) = psql_rows($surl, "SELECT count(*), count(DISTINCT id) FROM messages"
                              . " WHERE session_id IN ($ours)");
is $rows->[0], scalar(@ids), "$rows->[0] rows for " . scalar(@ids) . ' messages accepted: none twice';
is scalar(() = glob("$_->{spool}/*")), 0, "the spool of $_->{port} is empty again" for @nginx;

# spooled: the messages the spool took (again after a replay that found no
# primary yet: the counter counts each time); replayed: the distinct
# messages taken from the spool, every one of them now in the new primary
my ($spooled, $attempts, %replayed) = (0, 0);
for my $n (@nginx) {
    my ($status, $res) = request_once($n, 'GET /metrics');
    $spooled += $1 if $res->{body} =~ /^chathistory_messages_total\{outcome="spooled"\} (\d+)/m;
    $attempts += $1 if $res->{body} =~ /^chathistory_messages_total\{outcome="replayed"\} (\d+)/m;
    $replayed{$_} = 1 for nginx_log($n) =~ /replaying spooled message (\S+)/g;
}
my $replayed = keys %replayed;
cmp_ok $replayed, '>', 0, "$replayed messages were spooled and replayed ($spooled spoolings,"
                          . " $attempts replays)";
is missing_messages($surl, [keys %replayed], 0), 0, 'every replayed message is in the new primary';

# the workers followed: the jobs of the messages are done on the new primary
ok wait_until(60, sub { (psql_rows($surl, "SELECT count(*) FROM jobs WHERE"
        . " status <> 'done' AND payload->>'message_id' IN (SELECT id::text FROM messages"
        . " WHERE session_id IN ($ours))"))[0][0] == 0 }), 'the workers did every job';
for my $n (1, 2) {
    like Faults::slurp_file("$tmp/worker$n.log"), qr/reconnected to PostgreSQL.*$sport/,
         "worker $n reconnected to the new primary";
}
my @crit = map { nginx_log($_) =~ /^.*\[(?:crit|alert|emerg)\].*$/mg } @nginx;
is scalar(@crit), 0, 'nothing logged at crit or worse' or diag join "\n", @crit[0 .. 4];

diag sprintf 'failover: %d requests (%d pipeline, %d API, %d search; %d API 503s), %d messages'
             . ' spooled and replayed (%d spoolings, %d replays), %d lost; no primary for %.2f s;'
             . ' API back %.3f s after the promotion', scalar(@answers), scalar(@pipe),
             scalar(@api), scalar(@search), scalar(grep { $_->[2] eq '503' } @api), $replayed,
             $spooled, $attempts, $lost, $promoted - $stopping, $recovery;
is $lost, 0, sprintf '%d messages accepted, %d lost', scalar(@ids), $lost;

nginx_stop($_) for @nginx;
done_testing;
