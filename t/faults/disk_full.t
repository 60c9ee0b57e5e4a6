# The audio storage full (a small tmpfs the test mounts and fills) under a
# load of recorded requests with audio: every message is still recorded,
# without its audio and with the reason logged; nginx stays healthy, and
# stores audio again once there is room.

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
plan skip_all => 'mounting a tmpfs needs root' if $> != 0;

my $audio = tempdir('faults-audio-XXXXXX', TMPDIR => 1);
system('mount', '-t', 'tmpfs', '-o', 'size=256k,mode=0777', 'faults-audio', $audio) == 0
    or plan skip_all => "cannot mount a tmpfs on $audio (no CAP_SYS_ADMIN?)";
my $parent = $$;

END {
    if ($$ == $parent && $audio) {
        local $?;
        system('umount', $audio) == 0 or system('umount', '-l', $audio);
        rmdir $audio;
    }
}

# fill it to the last byte
system("dd if=/dev/zero of=$audio/filler bs=4k 2>/dev/null");
my ($free) = `df -k --output=avail $audio` =~ /(\d+)\s*$/;
is $free, 0, 'the audio storage is full';

my @voiced = new_sessions($db, 2, 1);
my $wav = do {
    open my $fh, '<:raw', "$ROOT/t/fixtures/audio/pcm16-mono-16k.wav" or die $!;
    local $/;
    <$fh>;
};

my $backend = nginx_start(backend => 1, workers => 1);
my $nginx = nginx_start(db => $db, backend_port => $backend->{port},
                        http => "chathistory_audio_storage_path $audio;");
my $master = nginx_pid($nginx);
my @workers = children($master);

my $pick = sub {
    my ($i, $c) = @_;
    return { tag => 'ok', req => "GET /ok HTTP/1.1\r\nHost: localhost\r\n\r\n" }
        if $i % 4 == 3;
    return { tag => 'audio',
             req => "POST /pipeline?session_id=$voiced[$c % 2] HTTP/1.1\r\n"
                    . "Host: localhost\r\nContent-Type: audio/wav\r\n"
                    . "Content-Length: " . length($wav) . "\r\n\r\n$wav" };
};

my $s = load_wait(load_start(port => $nginx->{port}, clients => 2, seconds => 5,
                             interval => 0.02, pick => $pick));
note sprintf '%d requests in %.1f s on a full disk: %s', $s->{total}, $s->{seconds},
    join '; ', map { my $t = $_; "$t: " . join ', ', map { "$_ $s->{by}{$t}{$_}" }
                     sort keys %{$s->{by}{$t}} } sort keys %{$s->{by}};

my $failed = grep { $_->[2] !~ /^2/ } @{$s->{answers}};
is $failed, 0, "every request answered 2xx ($s->{total})";
my @ids = @{$s->{ids}{audio} // []};
cmp_ok scalar(@ids), '>', 50, 'recorded requests with audio';
is missing_messages($db, \@ids, 20), 0, scalar(@ids) . ' messages accepted, none lost';

my $sessions = join ',', map { "'$_'" } @voiced;
my ($with) = psql_rows($db, "SELECT count(audio_path) FROM messages"
                            . " WHERE session_id IN ($sessions)");
is $with->[0], 0, 'none of them with audio';

my $log = nginx_log($nginx);
my %reasons;
$reasons{$1}++ for $log =~ /recorded without audio: (.*?)(?:, client|$)/mg;
note 'reasons logged: ' . join ', ', map { "\"$_\" $reasons{$_}" } keys %reasons;
is eval { my $n = 0; $n += $_ for values %reasons; $n }, scalar(@ids),
   'a reason logged for each';
is scalar(grep { !/No space left on device/ } keys %reasons), 0,
   'the reason: no space left on device';

is_deeply [sort { $a <=> $b } children($master)], [sort { $a <=> $b } @workers],
   'the same worker processes, none crashed';
is request_once($nginx, 'GET /ok'), 200, 'nginx answers';
is request_once($nginx, "GET /api/sessions/$voiced[0]"), 200, 'the API answers';
my @bad = $log =~ /^.*\[(?:error|crit|alert|emerg)\].*$/mg;
is scalar(@bad), 0, 'nothing logged at error or worse' or diag join "\n", @bad[0 .. 2];

# room again: the next message has its audio
unlink "$audio/filler";
my (undef, $res) = request_once($nginx, "POST /pipeline?session_id=$voiced[0]", $wav,
                                'Content-Type' => 'audio/wav');
ok $res->{msgid}, 'recorded once there is room';
ok Faults::wait_until(10, sub {
       (psql_rows($db, "SELECT count(audio_path) FROM messages"
                       . " WHERE id = '$res->{msgid}'"))[0][0] == 1 }),
   'with its audio';
is_deeply [grep { /\.tmp$/ } map { glob "$_/*" } glob "$audio/*"], [],
   'no temporary audio file left behind';

ok nginx_stop($nginx), 'nginx stops';

done_testing;
