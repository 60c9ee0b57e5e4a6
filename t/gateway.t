# The public gateway: /v1 with API keys. Missing, malformed, unknown and
# revoked keys; two organizations that try every endpoint and method on
# each other's data and find nothing; the shared cache (a cached key works
# while the database is away, a revoked one stops within the cache's
# lifetime); limit_req per organization answered in JSON; keys kept out of
# the logs.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use File::Temp qw(tempdir);
use File::Copy qw(copy);
use Digest::SHA qw(sha256_hex);
use Chathistory;

no_shuffle();
no_long_string();

my $db = $ENV{TEST_NGINX_DATABASE_URL};

our $A  = '0190c000-0000-7000-8000-00000000000a';   # organizations
our $B  = '0190c000-0000-7000-8000-00000000000b';
our $SA = '0190c000-0000-7000-8000-0000000000a1';   # a session of each
our $SB = '0190c000-0000-7000-8000-0000000000b1';
our $MA = '0190c000-0000-7000-8000-0000000000a2';   # a message of each
our $MB = '0190c000-0000-7000-8000-0000000000b2';

our $KB = 'chk_gatewayTestKeyOfOrganizationB_00000000000';
our $KR = 'chk_gatewayTestKeyRevokedLongAgo_000000000000';
our $KX = 'chk_gatewayTestKeyRevokedDuringTheTests_00000';
our $KU = 'chk_gatewayTestKeyThatNobodyEverMade_00000000';

sql(<<"SQL");
DELETE FROM organizations WHERE id IN ('$A', '$B')
    OR name IN ('gateway-a', 'gateway-b');
INSERT INTO organizations (id, name) VALUES ('$A', 'gateway-a'), ('$B', 'gateway-b');
INSERT INTO api_keys (org_id, name, key_hash, revoked_at) VALUES
    ('$B', 'gw-b', sha256('$KB'::bytea), NULL),
    ('$A', 'gw-revoked', sha256('$KR'::bytea), now() - interval '1 day'),
    ('$B', 'gw-x', sha256('$KX'::bytea), NULL);
INSERT INTO sessions (id, org_id, title, source_lang, target_lang, audio_enabled)
    VALUES ('$SA', '$A', 'a-title', 'en', 'es', true),
           ('$SB', '$B', 'b-title', 'en', 'es', true);
INSERT INTO messages (id, session_id, org_id, source_lang, target_lang,
                      source_text, translated_text, audio_path, audio_ms)
    VALUES ('$MA', '$SA', '$A', 'en', 'es', 'the zebra of a', 'la cebra de a',
            '$SA/$MA.opus', 2557),
           ('$MB', '$SB', '$B', 'en', 'es', 'the zebra of b', 'la cebra de b',
            '$SB/$MB.opus', 2557);
SQL

# org A's key as operators make them: with the worker
our $KA = `$ENV{CHATHISTORY_WORKER} --database-url '$db' apikey create --org gateway-a --name gw-a 2>/dev/null`;
chomp $KA;
die "the worker made no key: '$KA'\n" unless $KA =~ /^chk_[A-Za-z0-9_-]{43}$/;

our %hash = map { $_ => sha256_hex($_) } $KA, $KB, $KR, $KX, $KU;

my $storage = tempdir(CLEANUP => 1);
my $static = tempdir(CLEANUP => 1);
chmod 0755, $storage, $static;
for (["$SA", "$MA"], ["$SB", "$MB"]) {
    mkdir "$storage/$_->[0]";
    copy('t/fixtures/audio/speech.opus', "$storage/$_->[0]/$_->[1].opus")
        or die "copy: $!";
}
open my $fh, '>', "$static/whoami" or die; print $fh "ok\n"; close $fh;
chmod 0644, "$static/whoami";

db_control_start();

our $Http = <<"_EOC_";
    chathistory_database_url "$db";
    chathistory_auth_cache zone=chathistory_keys:1m valid=30s invalid=30s;
    log_format gateway '"\$request" \$status org=\$chathistory_org_id';
_EOC_

our $Config = <<"_EOC_";
    chathistory_audio_storage_path $storage;
    access_log logs/access.log gateway;
    location /v1/ { chathistory_auth api_key; chathistory_api; }
    location /api/ { chathistory_api; }
    location = /whoami {
        chathistory_auth api_key;
        root $static;
        add_header X-Org "\$chathistory_org_id" always;
    }
    location /db/ { proxy_pass http://127.0.0.1:\$TEST_NGINX_DB_CONTROL_PORT/; }
_EOC_

# Blocks named "(same nginx)" go on with the running nginx and its cache.
add_block_preprocessor(sub {
    my $block = shift;

    if ($block->name =~ /\(same nginx\)/) {
        $block->set_value("no_error_log", "[error]\n")
            unless defined $block->no_error_log || defined $block->error_log;
        # under valgrind, nginx stops after each block and its cache with it
        $block->set_value("skip_eval", "1: \$ENV{TEST_NGINX_USE_VALGRIND}");
        return;
    }

    if (!defined $block->must_die) {
        my $http = $Http;
        $http =~ s/^.*chathistory_auth_cache.*\n//m
            if ($block->http_config // '') =~ /chathistory_auth_cache/;
        $block->set_value("http_config", $http . ($block->http_config // ''));
        $block->set_value("config", $Config . ($block->config // ''));
    }

    chathistory_block($block);
});

sub bearer { "Authorization: Bearer $_[0]" }

run_tests();

is(sql("SELECT title FROM sessions WHERE id = '$SB'"), 'b-title',
   "org A's key changed nothing of org B's");
is(sql("SELECT count(*) FROM messages WHERE session_id = '$SB'"), 1,
   "org B's message is still there");
ok(-f "$storage/$SB/$MB.opus", "org B's audio is still there");
is(sql_eventually("SELECT last_used_at > now() - interval '5 minutes'"
                  . " FROM api_keys WHERE name = 'gw-a'", 't'), 't',
   "last_used_at of a key in use is set");
is(sql("SELECT last_used_at IS NULL FROM api_keys WHERE name = 'gw-revoked'"),
   't', "a revoked key is never marked used");

__DATA__

=== TEST 1: no key is 401 with a Bearer challenge
--- request
GET /v1/sessions
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="chathistory"
Content-Type: application/json
--- response_body_like eval
Chathistory::error_like(q{unauthorized}, q{an API key is required})



=== TEST 2: a header that is no Bearer token is 401
--- request
GET /v1/sessions
--- more_headers
Authorization: Basic dXNlcjpwYXNz
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="chathistory", error="invalid_token"
--- response_body_like eval
Chathistory::error_like(q{unauthorized}, q{the Authorization header is not a Bearer token})



=== TEST 2b: another scheme's Authorization beside a valid X-API-Key is 401 too
--- request eval
["GET /v1/sessions", "GET /v1/sessions"]
--- more_headers eval
["Authorization: Basic dXNlcjpwYXNz\nX-API-Key: $::KB",
 "Authorization: Bearer\nX-API-Key: $::KB"]
--- error_code eval
[401, 401]
--- response_body_like eval
[(Chathistory::error_like(q{unauthorized}, q{the Authorization header is not a Bearer token})) x 2]



=== TEST 3: malformed keys are 401 before any lookup
--- request eval
["GET /v1/sessions", "GET /v1/sessions", "GET /v1/sessions", "GET /v1/sessions"]
--- more_headers eval
["Authorization: Bearer " . ("k" x 257),
 "Authorization: Bearer chk_\xc3\xbc",
 "X-API-Key: $::KB\nX-API-Key: $::KA",
 "X-API-Key: a\x7fb"]
--- error_code eval
[401, 401, 401, 401]
--- response_body_like eval
[(Chathistory::error_like(q{unauthorized}, q{the API key is malformed})) x 4]



=== TEST 4: an unknown key is 401, and so is a revoked one
--- request eval
["GET /v1/sessions", "GET /v1/sessions", "GET /v1/sessions"]
--- more_headers eval
[main::bearer($::KU), main::bearer($::KR), "X-API-Key: $::KR"]
--- error_code eval
[401, 401, 401]
--- response_headers eval
[('WWW-Authenticate: Bearer realm="chathistory", error="invalid_token"') x 3]
--- response_body_like eval
[(Chathistory::error_like(q{unauthorized}, q{the API key is not valid})) x 3]



=== TEST 5: each key lists its own organization's sessions only
--- request eval
["GET /v1/sessions?limit=100", "GET /v1/sessions?limit=100", "GET /v1/sessions?limit=100"]
--- more_headers eval
[main::bearer($::KA), "X-API-Key: $::KB", "Authorization: bearer   $::KA"]
--- error_code eval
[200, 200, 200]
--- response_body_like eval
[qr/^\{"data":\[\{"id":"$::SA","org_id":"$::A",[^\]]*\],"next_cursor":null\}$/,
 qr/^\{"data":\[\{"id":"$::SB","org_id":"$::B",[^\]]*\],"next_cursor":null\}$/,
 qr/"id":"$::SA"/]
--- response_body_unlike eval
[qr/$::B/, qr/$::A/, qr/$::B/]



=== TEST 6: another organization's session, messages and audio are 404 to every method
--- request eval
["GET /v1/sessions/$::SB",
 "HEAD /v1/sessions/$::SB",
 "PATCH /v1/sessions/$::SB\n{\"title\": \"taken\"}",
 "DELETE /v1/sessions/$::SB",
 "GET /v1/sessions/$::SB/messages",
 "GET /v1/sessions/$::SB/messages?order=desc",
 "GET /v1/sessions/$::SB/messages/$::MB/audio",
 "HEAD /v1/sessions/$::SB/messages/$::MB/audio",
 "GET /v1/sessions/$::SA/messages/$::MB/audio",
 "GET /v1/sessions/$::SA",
 "PATCH /v1/sessions/$::SA\n{\"audio_enabled\": false}",
 "DELETE /v1/sessions/$::SA",
 "GET /v1/sessions/$::SA/messages",
 "GET /v1/sessions/$::SA/messages/$::MA/audio"]
--- more_headers eval
[(main::bearer($::KA)) x 9, (main::bearer($::KB)) x 5]
--- error_code eval
[(404) x 14]
--- response_body_unlike eval
[(qr/zebra|title|$::A|$::B/) x 14]



=== TEST 7: naming another organization is 403, one's own is fine
--- request eval
["GET /v1/sessions?org_id=$::B",
 "POST /v1/sessions\n{\"source_lang\": \"en\", \"target_lang\": \"fr\", \"org_id\": \"$::B\"}",
 "GET /v1/sessions?org_id=$::A&limit=1",
 "POST /v1/sessions\n{\"source_lang\": \"en\", \"target_lang\": \"fr\", \"org_id\": \"$::A\"}",
 "POST /v1/sessions\n{\"source_lang\": \"en\", \"target_lang\": \"fr\"}"]
--- more_headers eval
[(main::bearer($::KA)) x 5]
--- error_code eval
[403, 403, 200, 201, 201]
--- response_body_like eval
[qr/^\{"error":\{"code":"forbidden","message":"org_id is not the organization of the key","request_id":"[0-9a-f]{32}"\}\}$/,
 qr/"code":"forbidden"/,
 qr/"org_id":"$::A"/,
 qr/"org_id":"$::A"/,
 qr/"org_id":"$::A"/]



=== TEST 8: one's own session, messages and audio are there
--- request eval
["GET /v1/sessions/$::SA",
 "GET /v1/sessions/$::SA/messages",
 "GET /v1/sessions/$::SB/messages/$::MB/audio"]
--- more_headers eval
[main::bearer($::KA), main::bearer($::KA), main::bearer($::KB)]
--- error_code eval
[200, 200, 200]
--- response_body_like eval
[qr/"id":"$::SA","org_id":"$::A","title":"a-title"/,
 qr/"id":"$::MA".*"audio_url":"\/v1\/sessions\/$::SA\/messages\/$::MA\/audio"/,
 qr/^OggS/]



=== TEST 9: search finds one's own messages only
--- request eval
["POST /v1/search\n{\"query\": \"zebra\", \"mode\": \"keyword\"}",
 "POST /v1/search\n{\"query\": \"zebra\", \"mode\": \"keyword\"}",
 "POST /v1/search\n{\"query\": \"zebra\", \"mode\": \"keyword\", \"session_id\": \"$::SB\"}",
 "POST /v1/search\n{\"query\": \"zebra\", \"mode\": \"hybrid\"}",
 "POST /v1/search\n{\"query\": \"zebra\"}",
 "POST /v1/search\n{\"query\": \"zebra\", \"org_id\": \"$::B\"}"]
--- more_headers eval
[main::bearer($::KA), main::bearer($::KB), (main::bearer($::KA)) x 4]
--- error_code eval
[200, 200, 200, 200, 200, 403]
--- response_body_like eval
[qr/"id":"$::MA"/, qr/"id":"$::MB"/, qr/^\{"data":\[\]\}$/, qr/^\{"data":\[/,
 qr/^\{"data":\[/, qr/"code":"forbidden"/]
--- response_body_unlike eval
[(qr/$::MB|$::SB|$::B/) x 1, qr/$::MA|$::SA|$::A/, (qr/$::MB|$::SB|$::B/) x 4]



=== TEST 10: retention settings are the key's organization's only
--- request eval
["GET /v1/settings/retention",
 "GET /v1/settings/retention?org_id=$::B",
 "PUT /v1/settings/retention\n{\"retention_days\": 7, \"org_id\": \"$::B\"}",
 "PUT /v1/settings/retention\n{\"retention_days\": 7}",
 "GET /v1/settings/retention"]
--- more_headers eval
[(main::bearer($::KA)) x 4, main::bearer($::KB)]
--- error_code eval
[200, 403, 403, 200, 200]
--- response_body_like eval
[qr/"org_id":"$::A","retention_days":null/,
 qr/"code":"forbidden"/,
 qr/"code":"forbidden"/,
 qr/"org_id":"$::A","retention_days":7/,
 qr/"org_id":"$::B","retention_days":null/]



=== TEST 11: /api, without chathistory_auth, is not scoped
--- request
GET /api/sessions/0190c000-0000-7000-8000-0000000000b1
--- error_code: 200
--- response_body_like: "org_id":"0190c000-0000-7000-8000-00000000000b"



=== TEST 12: the connection stays open after a 401, its body discarded
--- pipelined_requests eval
["POST /v1/sessions\n{\"source_lang\": \"en\", \"target_lang\": \"fr\"}",
 "GET /v1/sessions/$::SA"]
--- more_headers eval
["Content-Type: application/json", main::bearer($::KA)]
--- error_code eval
[401, 200]
--- response_body_like eval
[qr/"code":"unauthorized"/, qr/"id":"$::SA"/]



=== TEST 13: any location can require a key; the org is a variable
--- request eval
["GET /whoami", "GET /whoami"]
--- more_headers eval
[main::bearer($::KA), main::bearer($::KU)]
--- error_code eval
[200, 401]
--- response_headers eval
["X-Org: $::A", "!X-Org"]
--- access_log eval
[qr/^"GET \/whoami HTTP\/1.1" 200 org=$::A$/]



=== TEST 13b: a refused request has no org in the log (same nginx)
--- request
GET /whoami
--- error_code: 401
--- access_log eval
[qr/^"GET \/whoami HTTP\/1.1" 200 org=$::A$/, qr/^"GET \/whoami HTTP\/1.1" 401 org=$/]



=== TEST 14: a key's use is noted once, not at every request
--- request
GET /whoami
--- more_headers eval
main::bearer($::KB)
--- error_code: 200
--- error_log
chathistory auth: noting the key's use



=== TEST 15: a cached key is neither looked up nor noted again (same nginx)
--- request
GET /whoami
--- more_headers eval
main::bearer($::KB)
--- error_code: 200
--- grep_error_log eval
qr/chathistory auth: (?:noting the key's use|looked up)/
--- grep_error_log_out
chathistory auth: noting the key's use
chathistory auth: looked up



=== TEST 16: the cache answers while the database is away; unknown keys are 503
--- request eval
["GET /whoami", "GET /whoami", "POST /db/stop\n",
 "GET /whoami", "GET /whoami", "GET /whoami", "GET /v1/sessions",
 "POST /db/start\n", "GET /whoami"]
--- more_headers eval
[main::bearer($::KA), main::bearer($::KU), "",
 main::bearer($::KA), main::bearer($::KU), main::bearer($::KB), main::bearer($::KX),
 "", main::bearer($::KB)]
--- error_code eval
[200, 401, 200, 200, 401, 503, 503, 200, 200]
--- response_body_like eval
[qr/ok/, qr/not valid/, qr/stop ok/, qr/ok/, qr/not valid/,
 qr/^\{"error":\{"code":"unavailable","message":"the database is unreachable","request_id":"[0-9a-f]{32}"\}\}$/,
 qr/"code":"unavailable"/, qr/start ok/, qr/ok/]
--- response_headers eval
["X-Org: $::A", "", "", "X-Org: $::A", "", "!WWW-Authenticate", "!WWW-Authenticate", "", "X-Org: $::B"]
--- no_error_log
[alert]
[crit]



=== TEST 17: revocation: the key works while cached
--- http_config
    chathistory_auth_cache zone=short_keys:1m valid=3s invalid=1s;
--- request
GET /whoami
--- more_headers eval
main::bearer($::KX)
--- error_code: 200



=== TEST 18: revoked, it still works within valid= (same nginx)
--- init
main::sql("UPDATE api_keys SET revoked_at = now() WHERE name = 'gw-x'");
--- request
GET /whoami
--- more_headers eval
main::bearer($::KX)
--- error_code: 200



=== TEST 19: and is refused once the cache forgot it (same nginx)
--- init
select undef, undef, undef, 3.2;
--- request
GET /whoami
--- more_headers eval
main::bearer($::KX)
--- error_code: 401
--- response_body_like: "the API key is not valid"



=== TEST 20: limit_req per organization, answered in JSON with Retry-After
--- http_config
    limit_req_zone $chathistory_org_id zone=per_org:1m rate=1r/m;
--- config
    location /v1/limited/ {
        chathistory_auth api_key;
        limit_req zone=per_org;
        limit_req_status 429;
        limit_req_log_level warn;
        error_page 429 = @rate_limited;
        chathistory_api;
    }
    location @rate_limited {
        default_type application/json;
        add_header Retry-After 60 always;
        return 429 '{"error":{"code":"rate_limited","message":"too many requests"}}\n';
    }
--- request eval
["GET /v1/limited/sessions?limit=1", "GET /v1/limited/sessions?limit=1",
 "GET /v1/limited/sessions?limit=1", "GET /v1/limited/sessions?limit=1",
 "GET /v1/limited/sessions?limit=1"]
--- more_headers eval
[main::bearer($::KA), main::bearer($::KA), main::bearer($::KB), "", main::bearer($::KB)]
--- error_code eval
[200, 429, 200, 401, 429]
--- response_headers eval
["!Retry-After", "Retry-After: 60\nContent-Type: application/json", "!Retry-After",
 "!Retry-After", "Retry-After: 60"]
--- response_body_like eval
[qr/"org_id":"$::A"/,
 qr/^\{"error":\{"code":"rate_limited","message":"too many requests"\}\}$/,
 qr/"org_id":"$::B"/, qr/"code":"unauthorized"/, qr/"code":"rate_limited"/]



=== TEST 20b: the organization of a limited request is logged (same nginx)
--- request
GET /v1/limited/sessions?limit=1
--- more_headers eval
main::bearer($::KA)
--- error_code: 429
--- access_log eval
[qr/^"GET \/v1\/limited\/sessions\?limit=1 HTTP\/1.1" 429 org=$::A$/]



=== TEST 21: no key nor its hash in the logs at the usual level
--- log_level: info
--- request eval
["GET /v1/sessions", "GET /v1/sessions", "GET /whoami", "GET /whoami"]
--- more_headers eval
[main::bearer($::KA), "X-API-Key: $::KB", main::bearer($::KU), main::bearer($::KR)]
--- error_code eval
[200, 200, 401, 401]
--- no_error_log eval
[$::KA, $::KB, $::KU, $::KR, $::hash{$::KA}, $::hash{$::KB}, $::hash{$::KU},
 $::hash{$::KR}, "[error]"]
--- no_access_log eval
[$::KA, $::KB, $::KU, $::KR, $::hash{$::KA}, $::hash{$::KB}]



=== TEST 22: at debug level, the module logs an 8-digit prefix of the hash only
--- request eval
["GET /v1/sessions", "GET /whoami", "GET /whoami"]
--- more_headers eval
[main::bearer($::KA), main::bearer($::KU), "X-API-Key: $::KR"]
--- error_code eval
[200, 401, 401]
--- error_log eval
[qr/chathistory auth: key [0-9a-f]{8}\.\.\./]
--- no_error_log eval
[qr/chathistory.*(?:\Q$::KA\E|\Q$::KU\E|\Q$::KR\E)/,
 $::hash{$::KA}, $::hash{$::KU}, $::hash{$::KR},
 substr($::hash{$::KA}, 0, 9), "[error]"]



=== TEST 22b: the prefix is the hash's
--- request
GET /whoami
--- more_headers eval
main::bearer($::KA)
--- error_code: 200
--- error_log eval
["chathistory auth: key " . substr($::hash{$::KA}, 0, 8) . "..."]
--- no_error_log eval
[$::hash{$::KA}, "[error]"]



=== TEST 22c: a duplicated Authorization puts both keys in nginx's own log at info (docs/gateway.md)
--- log_level: info
--- request eval
"GET /v1/sessions"
--- more_headers eval
main::bearer($::KA) . "\n" . main::bearer($::KB)
--- error_code: 400
--- error_log eval
[qr/client sent duplicate header line: "Authorization: Bearer \Q$::KB\E", previous value: "Authorization: Bearer \Q$::KA\E"/]
--- no_error_log
[error]
[crit]
[alert]



=== TEST 22d: and at notice, the level docs/gateway.md recommends, no key is logged
--- log_level: notice
--- request eval
"GET /v1/sessions"
--- more_headers eval
main::bearer($::KA) . "\n" . main::bearer($::KB)
--- error_code: 400
--- no_error_log eval
[$::KA, $::KB, $::hash{$::KA}, $::hash{$::KB}, "[error]", "[crit]", "[alert]"]



=== TEST 23: chathistory_auth needs the database
--- http_config
--- config
    location /x/ { chathistory_auth api_key; }
--- request
GET /x/
--- must_die
--- error_log
[emerg]
"chathistory_auth" requires "chathistory_database_url"



=== TEST 24: the cache zone needs a size
--- http_config
    chathistory_database_url "postgresql://postgres@127.0.0.1:1/nothing";
    chathistory_auth_cache zone=keys valid=30s;
--- config
--- request
GET /
--- must_die
--- error_log
[emerg]
invalid zone "zone=keys"
