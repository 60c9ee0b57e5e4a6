# PostgreSQL stopped and started again under load: the API answers 503
# while it is away and 200 within a second of its return; the pipeline
# answers 2xx throughout, and every message it announced is in the
# database afterwards (written at once, or spooled and replayed).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Faults;
use Test::More;
use Time::HiRes qw(time sleep);

my $db = $ENV{TEST_NGINX_DATABASE_URL};
plan skip_all => join(', ', grep { !$ENV{$_} } qw(TEST_NGINX_DATABASE_URL TEST_NGINX_PG_STOP
                                                   TEST_NGINX_PG_START)) . ' not set (t/README.md)'
    unless $db && $ENV{TEST_NGINX_PG_STOP} && $ENV{TEST_NGINX_PG_START};

my $app = 'faults restart';
my $url = $db . ($db =~ /\?/ ? '&' : '?') . "application_name=" . ($app =~ s/ /%20/r);

my @sessions = new_sessions($db, 8);
my $backend = nginx_start(backend => 1, workers => 1);
my $nginx = nginx_start(db => $url, backend_port => $backend->{port},
                        http => 'chathistory_database_pool_size 4;'
                                . ' chathistory_capture_session_cache 0;');

# requests alternate between the API and the pipeline
my $pick = sub {
    my ($i, $c) = @_;
    my $s = $sessions[($i + $c) % @sessions];
    return $i % 2
        ? { tag => 'api', req => "GET /api/sessions/$s HTTP/1.1\r\n"
                                 . "Host: localhost\r\n\r\n" }
        : { tag => 'pipeline', req => "POST /pipeline?session_id=$s HTTP/1.1\r\n"
                                      . "Host: localhost\r\nContent-Length: 4\r\n\r\nRIFF" };
};

# a busy pipeline (about 500 recorded messages a second) rather than as
# many as the machine can take: the spool's bound is not under test here
my $load = load_start(port => $nginx->{port}, clients => 4, seconds => 11,
                      interval => 0.004, pick => $pick);
sleep 3;
my $stopping = time;
system($ENV{TEST_NGINX_PG_STOP}) == 0 or BAIL_OUT('cannot stop PostgreSQL');
my $stopped = time;
sleep 3;
my $starting = time;
system($ENV{TEST_NGINX_PG_START}) == 0 or BAIL_OUT('cannot start PostgreSQL');
my $started = time;
my $s = load_wait($load);

my %api = %{$s->{by}{api} // {}};
my %pipe = %{$s->{by}{pipeline} // {}};
note sprintf "%d requests in %.1f s (%d retried on a closed keep-alive"
             . " connection); PostgreSQL away from %.2f s to %.2f s",
             $s->{total}, $s->{seconds}, $s->{retries},
             $stopped - $load->{started}, $started - $load->{started};
note "api: " . join(', ', map { "$_ $api{$_}" } sort keys %api);
note "pipeline: " . join(', ', map { "$_ $pipe{$_}" } sort keys %pipe);
note "errors: " . join(', ', map { "$_ $s->{errors}{$_}" } keys %{$s->{errors}})
    if %{$s->{errors}};

# the API: 200 or 503, 503 exactly while the database was away
my @api = grep { $_->[1] eq 'api' } @{$s->{answers}};
is scalar(grep { $_->[2] ne '200' && $_->[2] ne '503' } @api), 0,
   'the API answers 200 or 503, nothing else';
my @down = grep { $_->[0] > $stopped && $_->[0] < $starting } @api;
cmp_ok scalar(@down), '>', 20, 'API requests while the database was away';
is scalar(grep { $_->[2] ne '503' } @down), 0, 'all of them 503';
my @before = grep { $_->[0] < $stopping } @api;
is scalar(grep { $_->[2] ne '200' } @before), 0, 'all 200 before';

my ($first) = grep { $_->[0] >= $started && $_->[2] eq '200' } @api;
ok $first, 'the API answers 200 again';
my $recovery = $first ? $first->[0] - $started : 99;
cmp_ok $recovery, '<', 1, sprintf 'within a second of the database\'s return'
                                  . ' (%.3f s)', $recovery;
my @late = grep { $_->[0] >= $started + 1 } @api;
cmp_ok scalar(@late), '>', 20, 'API requests after that second';
is scalar(grep { $_->[2] ne '200' } @late), 0, 'all of them 200';

# the pipeline: never disturbed, nothing lost
my @pipe = grep { $_->[1] eq 'pipeline' } @{$s->{answers}};
my $failed = grep { $_->[2] !~ /^2/ } @pipe;
is $failed, 0, scalar(@pipe) . ' pipeline requests, every one 2xx';
my $during = grep { $_->[0] > $stopped && $_->[0] < $starting } @pipe;
cmp_ok $during, '>', 20, "$during of them while the database was away";
my @ids = @{$s->{ids}{pipeline} // []};
is scalar(@ids), scalar(@pipe), 'every one announced a message id';

my $lost = missing_messages($db, \@ids, 60);
is $lost, 0, sprintf '%d messages accepted, %d lost', scalar(@ids), $lost;
is scalar(() = glob("$nginx->{spool}/*")), 0, 'the spool is empty again';

my $log = nginx_log($nginx);
my @reports = $log =~ /\] \d+#\d+: chathistory: (\d+) messages? spooled until/g;
my $spooled = 0;
$spooled += $_ for @reports;
my %lostlog = map { $_ => 1 } $log =~ /message (\S+) lost/g;
note sprintf '%d messages spooled in %d lines, %d lost in the log', $spooled,
    scalar(@reports), scalar(keys %lostlog);
cmp_ok $spooled, '>=', $during, 'the warn lines count the messages spooled';
cmp_ok scalar(@reports), "<=", 2 * (int($starting - $stopping) + 4),
    'in a line a second or fewer per worker';
unlike $log, qr/\[warn\].* message \S+ spooled/, 'not a warn line per message';
my @crit = $log =~ /^.*\[(?:crit|alert|emerg)\].*$/mg;
is scalar(@crit), 0, 'nothing logged at crit or worse' or diag join "\n", @crit[0 .. 4];

nginx_stop($nginx);
is backends($db, $app), 0, 'no database connection left behind';

done_testing;
