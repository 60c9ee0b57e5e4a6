# chathistory_rate_limit_zone across hosts: two nginx on one database, one
# zone name, an organization's limit of 40 an hour. Sequential requests
# with a sync between them are counted exactly (30 on one host, then 10 of
# 30 on the other); requests interleaved on both as fast as one client
# goes admit at most the limit plus what the hosts were sent within two
# sync intervals after the limit was reached (docs/gateway.md), in fact a
# few at most since a host near the limit syncs at once, and after
# a sync both refuse; the database's row holds what both admitted. With the
# database stopped each host counts alone, and its counts reach the
# database when it is back.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Faults;
use Test::More;
use Time::HiRes qw(time sleep);

my $db = $ENV{TEST_NGINX_DATABASE_URL};
plan skip_all => 'TEST_NGINX_DATABASE_URL is not set (t/README.md)' unless $db;

my $LIMIT = 40;
my $SYNC = 0.1;
my %org = (x => '0190c000-0000-7000-8000-0000000000e1',
           y => '0190c000-0000-7000-8000-0000000000e2',
           z => '0190c000-0000-7000-8000-0000000000e3');
my %key = (x => 'chk_rateLimitTestKeyOfOrganizationX_00000000',
           y => 'chk_rateLimitTestKeyOfOrganizationY_00000000',
           z => 'chk_rateLimitTestKeyOfOrganizationZ_00000000');
my $orgs = join ', ', map { "'$_'" } values %org;

psql_rows($db, "DELETE FROM organizations WHERE id IN ($orgs)");
psql_rows($db, "DELETE FROM rate_limits WHERE zone = 'faults_org'");
for my $o (qw(x y z)) {
    psql_rows($db, "INSERT INTO organizations (id, name) VALUES ('$org{$o}', 'rl-$o')");
    psql_rows($db, "INSERT INTO api_keys (org_id, name, key_hash) VALUES"
                   . " ('$org{$o}', 'rl-$o', sha256('$key{$o}'::bytea))");
}

# a fixed window of an hour: do not start just before it turns
my $left = 3600 - time() % 3600;
sleep $left + 1 if $left < 40;

sub one { return (psql_rows($db, $_[0]))[0][0] }

my @hosts = map {
    nginx_start(backend_port => 9, workers => 2,
                http => 'chathistory_auth_cache zone=keys:1m;'
                        . ' chathistory_rate_limit_zone $chathistory_org_id'
                        . " zone=faults_org:1m rate=${LIMIT}r/h sync=100ms;",
                server => 'location /v1/ { chathistory_auth api_key;'
                          . ' chathistory_rate_limit zone=faults_org; chathistory_api; }'
                          # an answer that needs no database, for the outage
                          . ' location /v1/static/ { chathistory_auth api_key;'
                          . ' chathistory_rate_limit zone=faults_org; empty_gif; }')
} 1, 2;

sub get {
    my ($host, $o, $path) = @_;
    return request_once($host, $path // 'GET /v1/sessions?limit=1', undef,
                        Authorization => "Bearer $key{$o}");
}

# --- sequential, with a sync in between: exact --------------------------------

my @a = map { (get($hosts[0], 'x'))[0] } 1 .. 30;
is(scalar(grep { $_ == 200 } @a), 30, '30 of 30 admitted on the first host');
my (undef, $res) = get($hosts[0], 'y');
like($res->{head} // '', qr/^RateLimit-Limit: $LIMIT\r?$/mi, 'RateLimit-Limit');
like($res->{head} // '', qr/^RateLimit-Remaining: 39\r?$/mi,
     'RateLimit-Remaining counts down per organization');

sleep 5 * $SYNC;

my @b = map { (get($hosts[1], 'x'))[0] } 1 .. 30;
is(scalar(grep { $_ == 200 } @b), 10,
   'the second host admits only what the first left: 10 of 30');
is(scalar(grep { $_ == 429 } @b), 20, 'and refuses the other 20 with 429');

($_, $res) = get($hosts[1], 'x');
is($res->{status}, 429, 'over the limit');
like($res->{head} // '', qr/^Retry-After: \d+\r?$/mi, 'Retry-After');
like($res->{head} // '', qr/^RateLimit-Remaining: 0\r?$/mi, 'RateLimit-Remaining: 0');
like($res->{head} // '', qr/^Content-Type: application\/json/mi, 'JSON');
like($res->{body} // '', qr/^\{"error":\{"code":"rate_limited","message":"too many requests","request_id":"[0-9a-f]{32}"\}\}/,
     'the API\'s error');

sleep 5 * $SYNC;
is(one("SELECT sum(n) FROM rate_limits WHERE zone = 'faults_org'"
                  . " AND key = '$org{x}'"), 40, "the database's count: 40");

# --- interleaved as fast as one client goes: bounded slack -----------------------

# org y has 1 of 40 from above
my (@sent, @ok);
for my $i (0 .. 199) {
    my $t = time();
    my $s = (get($hosts[$i % 2], 'y'))[0];
    push @sent, $t;
    push @ok, $t if $s == 200;
    die "unexpected status $s\n" unless $s == 200 || $s == 429;
}
my $admitted = @ok + 1;
my $reached = $ok[$LIMIT - 2] // $sent[-1];
my $window = 2 * ($SYNC + 0.05);
my $slack = grep { $_ >= $reached && $_ <= $reached + $window } @sent;
cmp_ok($admitted, '>=', $LIMIT, "interleaved: at least the limit admitted ($admitted)");
cmp_ok($admitted - $LIMIT, "<=", $slack,
       "interleaved: over the limit by at most the requests of two sync intervals"
       . " ($slack)");
# a host that has admitted a quarter of what was left syncs at once, not at
# its timer: one client's requests, one at a time, outrun it by a few
cmp_ok($admitted, '<=', $LIMIT + 5,
       'interleaved: the early sync keeps it within a few of the limit');
diag("interleaved on two hosts: $admitted admitted of 201 for a limit of $LIMIT;"
     . " requests in two sync intervals after the limit: $slack");

sleep 5 * $SYNC;
my @after = map { (get($hosts[$_ % 2], 'y'))[0] } 0 .. 9;
is(scalar(grep { $_ == 429 } @after), 10, 'after a sync both hosts refuse');
is(one("SELECT sum(n) FROM rate_limits WHERE zone = 'faults_org'"
                  . " AND key = '$org{y}'"), $admitted,
   "the database's count is what both admitted");

# the request's own log line, not an error
for my $h (@hosts) {
    my $log = slurp_file($h->{log});
    unlike($log, qr/\[(error|crit|alert|emerg)\]/, "no error in $h->{log}");
}

# --- the database away: each host counts alone, and sends its counts later ----------

SKIP: {
    skip 'TEST_NGINX_PG_STOP is not set (scripts/test sets it)', 6
        unless $ENV{TEST_NGINX_PG_STOP} && $ENV{TEST_NGINX_PG_START};

    # the key cached on both hosts, 2 of 40 counted and synced
    get($hosts[$_], 'z', 'GET /v1/static/x') for 0, 1;
    sleep 5 * $SYNC;
    system($ENV{TEST_NGINX_PG_STOP}) == 0 or BAIL_OUT('cannot stop PostgreSQL');
    my %by;
    for my $i (0 .. 99) {
        my $s = (get($hosts[$i % 2], 'z', 'GET /v1/static/x'))[0];
        $by{$i % 2}{$s}++;
    }
    system($ENV{TEST_NGINX_PG_START}) == 0 or BAIL_OUT('cannot start PostgreSQL');
    my $down = ($by{0}{200} // 0) + ($by{1}{200} // 0);
    diag("database away: host 1 admitted " . ($by{0}{200} // 0) . ", host 2 "
         . ($by{1}{200} // 0) . " of 50 each");
    is($by{$_}{200} // 0, $LIMIT - 2, "database away: host " . ($_ + 1)
       . " admits the limit alone (40 less the 2 synced)") for 0, 1;
    ok(wait_until(15, sub {
           (one("SELECT sum(n) FROM rate_limits WHERE zone = 'faults_org'"
                . " AND key = '$org{z}'") // 0) == 2 + $down }),
       "back: the database counts what both hosts admitted meanwhile (" . (2 + $down) . ")");
    is((get($hosts[0], 'z', 'GET /v1/static/x'))[0], 429, 'and the limit holds again');
    for my $h (@hosts) {
        my $n = () = slurp_file($h->{log}) =~ /zone "faults_org" not synced/g;
        ok($n >= 1 && $n <= 2, "the outage said once per worker, not per sync ($n)");
    }
}

psql_rows($db, "DELETE FROM organizations WHERE id IN ($orgs)");
done_testing();
