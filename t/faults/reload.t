# nginx reloaded (HUP) several times and its binary upgraded (USR2, WINCH,
# QUIT to the old master) under load: no request fails, every message
# announced is recorded, no connection is left behind; and a worker that
# quits while an audio file is being encoded records its message first.
#
# "No request fails" means: every request gets a 2xx answer. A request
# sent on a kept-alive connection that an old worker closed before reading
# it is sent again on a new connection, as every HTTP client does, and is
# counted as a retry; a request that got no answer on a new connection, a
# reset after the first byte, a timeout or a non-2xx answer is a failure.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use File::Temp qw(tempdir);
use Faults;
use Test::More;
use Time::HiRes qw(time sleep);

my $db = $ENV{TEST_NGINX_DATABASE_URL};
plan skip_all => 'TEST_NGINX_DATABASE_URL is not set (t/README.md)' unless $db;

my $app = 'faults reload';
my $url = $db . ($db =~ /\?/ ? '&' : '?') . "application_name=" . ($app =~ s/ /%20/r);
my ($workers, $pool) = (2, 4);

my $audio = tempdir(CLEANUP => 1);
chmod 0777, $audio;

my @plain = new_sessions($db, 6);
my @voiced = new_sessions($db, 2, 1);
my $wav = do {
    open my $fh, '<:raw', "$ROOT/t/fixtures/audio/pcm16-mono-16k.wav" or die $!;
    local $/;
    <$fh>;
};

my $backend = nginx_start(backend => 1, workers => 1);
my $nginx = nginx_start(db => $url, backend_port => $backend->{port},
                        workers => $workers,
                        http => "chathistory_database_pool_size $pool;"
                                . " chathistory_audio_storage_path $audio;",
                        server => 'client_max_body_size 8m;');

sub pipeline {
    my ($session, $type, $body) = @_;
    return "POST /pipeline?session_id=$session HTTP/1.1\r\nHost: localhost\r\n"
        . "Content-Type: $type\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
}

# the API, the pipeline, and one request in twenty with audio to encode
my $pick = sub {
    my ($i, $c) = @_;
    my $k = $i % 20;
    return { tag => 'audio', req => pipeline($voiced[$c % 2], 'audio/wav', $wav) }
        if $k == 0;
    my $s = $plain[($i + $c) % @plain];
    return $k % 2
        ? { tag => 'api', expect => qq("id":"$s"),
            req => "GET /api/sessions/$s HTTP/1.1\r\nHost: localhost\r\n\r\n" }
        : { tag => 'pipeline', req => pipeline($s, 'audio/wav', 'RIFF') };
};

my $load = load_start(port => $nginx->{port}, clients => 4, seconds => 14,
                      interval => 0.004, pick => $pick);

my $first_master = nginx_pid($nginx);
for (1 .. 3) {
    sleep 2;
    nginx_signal($nginx, 'HUP');
}

# the binary upgrade, as nginx's documentation describes it
sleep 2;
my $old = nginx_signal($nginx, 'USR2');
ok wait_until(10, sub { -s "$nginx->{pid_file}.oldbin"
                        && (nginx_pid($nginx) // $old) != $old }),
   'USR2: a new master started with the inherited sockets';
my $new = nginx_pid($nginx);
sleep 1;
nginx_signal($nginx, 'WINCH', $old);
ok wait_until(15, sub { !grep { $_ != $new } children($old) }),
   "WINCH: the old master's workers finished and left"
    or diag `ps -o pid,stat,etime,cmd --ppid $old`;
nginx_signal($nginx, 'QUIT', $old);
ok wait_until(10, sub { !kill 0, $old }), 'QUIT: the old master left';

my $s = load_wait($load);
note sprintf '%d requests in %.1f s: 3 reloads and a binary upgrade; %d sent again'
             . ' after an old worker closed a kept-alive connection',
             $s->{total}, $s->{seconds}, $s->{retries};
for my $tag (sort keys %{$s->{by}}) {
    note "$tag: " . join ', ', map { "$_ $s->{by}{$tag}{$_}" } sort keys %{$s->{by}{$tag}};
}
note 'errors: ' . join ', ', map { "$_ $s->{errors}{$_}" } keys %{$s->{errors}}
    if %{$s->{errors}};

my $failed = grep { $_->[2] !~ /^2/ } @{$s->{answers}};
cmp_ok $s->{total}, '>', 300, 'a load';
is $failed, 0, "no failed request ($s->{total} requests)";

my @ids = map { @{$s->{ids}{$_} // []} } qw(pipeline audio);
my $recorded = grep { $_->[1] ne 'api' } @{$s->{answers}};
is scalar(@ids), $recorded, 'every pipeline answer announced a message';
my $lost = missing_messages($db, \@ids, 30);
is $lost, 0, sprintf '%d messages accepted, %d lost', scalar(@ids), $lost;
my $voiced = join ',', map { "'$_'" } @voiced;
my ($with_audio) = psql_rows($db, "SELECT count(*) FROM messages WHERE session_id"
                                  . " IN ($voiced) AND audio_path IS NOT NULL");
is $with_audio->[0], scalar(@{$s->{ids}{audio} // []}),
   "each of the $with_audio->[0] audio messages has its audio"
    or diag join "\n", (nginx_log($nginx) =~ /^.*without audio.*$/mg)[0 .. 3];
is backend_answers($backend), $recorded,
   "the backend got each of the $recorded pipeline requests once";

# what is left: two workers of the new master, the pool's connections
# at most, and no client connection but the one asking
is scalar(children($new)), $workers, "the new master has its $workers workers";
ok wait_until(5, sub { backends($db, $app) <= $workers * $pool }),
   sprintf 'database connections back within the pools (%d, at most %d)',
           backends($db, $app), $workers * $pool;
my (undef, $status) = request_once($nginx, 'GET /status');
like $status->{body}, qr/^Active connections: 1 /, 'no client connection left open';

my $log = nginx_log($nginx);
my @bad = $log =~ /^.*\[(?:error|crit|alert|emerg)\].*$/mg;
is scalar(@bad), 0, 'nothing logged at error or worse' or diag join "\n", @bad[0 .. 4];

# A worker told to quit while an audio file is in the thread pool: its
# message is recorded before the worker goes. Forty seconds of audio take
# long enough to encode for the quit to come first.
my $long = long_wav(40);
my $res = raw_request($nginx, pipeline($voiced[0], 'audio/wav', $long)
                              =~ s/\r\n\r\n/\r\nConnection: close\r\n\r\n/r);
is $res->{status}, 200, 'forty seconds of audio sent'
    or diag explain $res;
my @before = children($new);
nginx_signal($nginx, 'HUP');
ok wait_until(15, sub { !grep { kill 0, $_ } @before }),
   'the old workers left after the reload';
ok $res->{msgid} && missing_messages($db, [$res->{msgid}], 5) == 0,
   'the message of the audio in flight is recorded';
my ($path) = psql_rows($db, "SELECT audio_path FROM messages WHERE id = '"
                            . ($res->{msgid} // '0') . "'");
ok $path && $path->[0] && -s "$audio/$path->[0]", 'with its audio file';

ok nginx_stop($nginx), 'nginx stops';
is backends($db, $app), 0, 'no database connection left behind';

done_testing;


# A WAV of $seconds of a wobbling tone, 16 kHz mono 16-bit.
sub long_wav {
    my ($seconds) = @_;
    my $n = 16000 * $seconds;
    my $pcm = pack 's<*', map { int(8000 * sin($_ / 7) * sin($_ / 5000)) } 0 .. $n - 1;
    return 'RIFF' . pack('V', 36 + length $pcm) . 'WAVEfmt '
        . pack('VvvVVvv', 16, 1, 1, 16000, 32000, 2, 16)
        . 'data' . pack('V', length $pcm) . $pcm;
}
