# chathistory_rate_limit on one host: an organization's requests counted in
# its window, the RateLimit-* headers, 429 in the API's JSON with
# Retry-After, requests without a key not counted, the count in
# rate_limits; configuration mistakes at start-up. Two hosts on one
# database: t/faults/ratelimit.t.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use Chathistory;

no_shuffle();
no_long_string();

my $db = $ENV{TEST_NGINX_DATABASE_URL};

our $O = '0190c000-0000-7000-8000-0000000000f1';
our $K = 'chk_gatewayRateLimitTestKeyOfTheOrg_00000000';

sql(<<"SQL");
DELETE FROM organizations WHERE id = '$O' OR name = 'gateway-rl';
INSERT INTO organizations (id, name) VALUES ('$O', 'gateway-rl');
INSERT INTO api_keys (org_id, name, key_hash) VALUES ('$O', 'gw-rl', sha256('$K'::bytea));
DELETE FROM rate_limits WHERE zone = 'gw_rl';
SQL

# a window of an hour: not just before it turns
my $left = 3600 - time() % 3600;
sleep $left + 1 if $left < 20;

our $Http = <<"_EOC_";
    chathistory_database_url "$db";
    chathistory_auth_cache zone=keys:1m;
    chathistory_rate_limit_zone \$chathistory_org_id zone=gw_rl:1m rate=3r/h sync=50ms;
_EOC_

our $Config = <<"_EOC_";
    location /v1/ {
        chathistory_auth api_key;
        chathistory_rate_limit zone=gw_rl;
        chathistory_api;
    }
    location /open/ {
        chathistory_rate_limit zone=gw_rl;
        chathistory_api;
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    if (!defined $block->must_die) {
        $block->set_value("http_config", $Http . ($block->http_config // ''));
        $block->set_value("config", $Config . ($block->config // ''));
        $block->set_value("no_error_log", "[error]\n")
            unless defined $block->no_error_log || defined $block->error_log;
    }
    chathistory_block($block);
});

run_tests();

is(sql_eventually("SELECT n FROM rate_limits WHERE zone = 'gw_rl' AND key = '$O'", 3), 3,
   "the database counted the organization's 3 admitted requests");
sql("DELETE FROM organizations WHERE id = '$O'");
sql("DELETE FROM rate_limits WHERE zone = 'gw_rl'");

__DATA__

=== TEST 1: the limit's three requests pass with the RateLimit headers, the fourth is 429
--- request eval
["GET /v1/sessions?limit=1", "GET /v1/sessions?limit=1", "GET /v1/sessions?limit=1",
 "GET /v1/sessions?limit=1"]
--- more_headers eval
["Authorization: Bearer $::K", "Authorization: Bearer $::K", "Authorization: Bearer $::K",
 "Authorization: Bearer $::K"]
--- error_code eval
[200, 200, 200, 429]
--- response_headers eval
["RateLimit-Limit: 3\nRateLimit-Remaining: 2", "RateLimit-Remaining: 1",
 "RateLimit-Remaining: 0\n!Retry-After",
 "RateLimit-Remaining: 0\nContent-Type: application/json"]
--- response_headers_like eval
["RateLimit-Reset: \\d+", "RateLimit-Reset: \\d+", "RateLimit-Reset: \\d+",
 "Retry-After: \\d+"]
--- response_body_like eval
['"data":', '"data":', '"data":',
 '^\{"error":\{"code":"rate_limited","message":"too many requests","request_id":"[0-9a-f]{32}"\}\}$']



=== TEST 2: a request without an organization is not counted
--- request eval
["GET /open/sessions?limit=1", "GET /open/sessions?limit=1", "GET /open/sessions?limit=1",
 "GET /open/sessions?limit=1", "GET /open/sessions?limit=1"]
--- error_code eval
[200, 200, 200, 200, 200]
--- response_headers eval
["!RateLimit-Limit", "!RateLimit-Limit", "!RateLimit-Limit", "!RateLimit-Limit",
 "!RateLimit-Limit"]



=== TEST 3: a zone nobody declared
--- http_config
    chathistory_database_url "postgresql://postgres@127.0.0.1:1/nothing";
--- config
    location /x/ { chathistory_rate_limit zone=nowhere; chathistory_api; }
--- request
GET /x/
--- must_die
--- error_log
[emerg]
unknown chathistory_rate_limit_zone "nowhere"



=== TEST 4: a rate without its window
--- http_config
    chathistory_database_url "postgresql://postgres@127.0.0.1:1/nothing";
    chathistory_rate_limit_zone $binary_remote_addr zone=z:1m rate=10;
--- config
--- request
GET /
--- must_die
--- error_log
[emerg]
invalid rate "rate=10"



=== TEST 5: the zone needs the database
--- http_config
    chathistory_rate_limit_zone $binary_remote_addr zone=z:1m rate=10r/s;
--- config
--- request
GET /
--- must_die
--- error_log
[emerg]
requires "chathistory_database_url" before it



=== TEST 6: a sync interval out of range
--- http_config
    chathistory_database_url "postgresql://postgres@127.0.0.1:1/nothing";
    chathistory_rate_limit_zone $binary_remote_addr zone=z:1m rate=10r/s sync=5ms;
--- config
--- request
GET /
--- must_die
--- error_log
[emerg]
invalid sync "sync=5ms": 10ms to 60s
