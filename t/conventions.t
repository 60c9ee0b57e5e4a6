# The conventions every answer keeps: Location on 201, a session's ETag
# (the MD5 of the JSON it is) with If-Match and If-None-Match, X-Request-Id
# on every answer and in every JSON error, CORS by chathistory_cors_origin
# (off by default), and GET /api/health with the database up, down and
# silent.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use IO::Socket::INET;
use Digest::MD5 qw(md5_hex);
use Chathistory;

no_shuffle();
no_long_string();
add_block_preprocessor(\&chathistory_block);

our $S = '0190e000-0000-7000-8000-0000000000e1';   # the ETag fixture
our $ORG = sql("SELECT id FROM organizations WHERE name = 'default'");

sql(<<"SQL");
DELETE FROM sessions WHERE id::text LIKE '0190e000-%';
INSERT INTO sessions (id, org_id, title, source_lang, target_lang,
                      created_at, updated_at)
    VALUES ('$S', '$ORG', 'etag', 'en', 'es',
            '2026-02-01T10:00:00Z', '2026-02-01T10:00:00Z');
SQL

# the fixture's JSON as GET answers it, and so its ETag
our $JSON = qq({"id":"$S","org_id":"$ORG","title":"etag","source_lang":"en",)
          . qq("target_lang":"es","audio_enabled":false,"user_id":null,)
          . qq("metadata":null,"created_at":"2026-02-01T10:00:00.000Z",)
          . qq("updated_at":"2026-02-01T10:00:00.000Z","expires_at":null,)
          . qq("message_count":0});
our $ETAG = md5_hex($JSON);
$ENV{TEST_NGINX_S} = $S;

# A silent "database": it takes connections and never says a word.
our $silent = IO::Socket::INET->new(Listen => 16, LocalAddr => '127.0.0.1',
                                    LocalPort => 0, ReuseAddr => 1)
    or die "cannot listen: $!";
$ENV{TEST_NGINX_SILENT_PORT} = $silent->sockport;

db_control_start();

# One request to the block's nginx: (status, {lower-case header => value},
# body).
sub http {
    my ($method, $path, $headers, $body) = @_;
    my $port = $ENV{TEST_NGINX_SERVER_PORT} || Test::Nginx::Util::server_port();
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 10)
        or die "cannot connect: $!";
    $body //= '';
    my $req = "$method $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
    $req .= "$_: $headers->{$_}\r\n" for sort keys %{ $headers || {} };
    $req .= "Content-Type: application/json\r\nContent-Length: " . length($body)
            . "\r\n" if length $body;
    print $s "$req\r\n$body";
    local $/;
    my $raw = <$s> // '';
    my ($head, $rest) = split /\r\n\r\n/, $raw, 2;
    my ($status) = $head =~ m{^HTTP/1\.1 (\d+)};
    my %h;
    for (split /\r\n/, $head) {
        $h{lc $1} = $2 if /^([^:]+):\s*(.*)$/;
    }
    return ($status, \%h, $rest // '');
}

sub check_etags {
    my ($st, $h, $body) = http('GET', "/api/sessions/$S");
    is($st, 200, 'the fixture is there');
    is($body, "$JSON\n", 'the fixture answers as expected');
    is($h->{etag}, qq("$ETAG"), 'its ETag is the MD5 of its JSON, quoted');

    ($st, $h) = http('GET', "/api/sessions/$S", { 'If-None-Match' => qq("$ETAG") });
    is($st, 304, 'If-None-Match with the ETag is 304');
    is($h->{etag}, qq("$ETAG"), 'the 304 has the ETag');

    ($st) = http('GET', "/api/sessions/$S", { 'If-None-Match' => qq(W/"$ETAG", "x") });
    is($st, 304, 'If-None-Match compares weakly, in a list');

    ($st) = http('GET', "/api/sessions/$S", { 'If-None-Match' => qq("0$ETAG") });
    is($st, 200, 'If-None-Match with another tag is 200');

    ($st, $h, $body) = http('GET', "/api/sessions/$S", { 'If-Match' => '"' . ('0' x 32) . '"' });
    is($st, 412, 'a GET with a failing If-Match is 412');
    like($body, Chathistory::error_like('precondition_failed',
                                        'the session does not match If-Match'),
         'the 412 is the JSON error');

    ($st, $h, $body) = http('PATCH', "/api/sessions/$S",
                            { 'If-Match' => '"' . ('0' x 32) . '"' }, '{"title": "lost"}');
    is($st, 412, 'a PATCH with a failing If-Match is 412');
    like($body, qr/"code":"precondition_failed"/, 'in JSON');
    is(sql("SELECT title FROM sessions WHERE id = '$S'"), 'etag',
       'and changed nothing');

    ($st, $h) = http('PATCH', "/api/sessions/$S", { 'If-Match' => qq(W/"$ETAG") },
                     '{"title": "weak"}');
    is($st, 412, 'If-Match compares strongly: a weak tag never matches');

    ($st, $h, $body) = http('PATCH', "/api/sessions/$S",
                            { 'If-Match' => qq("1234", "$ETAG") }, '{"title": "won"}');
    is($st, 200, 'a PATCH with the ETag among If-Match is 200');
    like($body, qr/"title":"won"/, 'and changed the session');
    my $new = $h->{etag};
    like($new, qr/^"[0-9a-f]{32}"$/, 'the answer has the new ETag');
    isnt($new, qq("$ETAG"), 'which is another');

    ($st, $h, $body) = http('GET', "/api/sessions/$S");
    is($h->{etag}, $new, 'GET gives the PATCH answer\'s ETag');
    is($h->{etag}, '"' . md5_hex($body =~ s/\n\z//r) . '"', 'the MD5 of its body');

    ($st) = http('PATCH', "/api/sessions/$S", { 'If-Match' => qq("$ETAG") },
                 '{"title": "stale"}');
    is($st, 412, 'the old ETag no longer matches');

    sql("INSERT INTO messages (id, session_id, org_id, source_lang, target_lang,"
        . " source_text, translated_text) VALUES ('0190e000-0000-7000-8000-0000000000f1',"
        . " '$S', '$ORG', 'en', 'es', 'hi', 'hola')");
    ($st, $h) = http('GET', "/api/sessions/$S");
    isnt($h->{etag}, $new, 'a new message changes the ETag (message_count)');

    ($st) = http('PATCH', "/api/sessions/$S", { 'If-Match' => $new }, '{"title": "late"}');
    is($st, 412, 'so a PATCH with the ETag read before the message is 412');

    ($st) = http('PATCH', "/api/sessions/$S", { 'If-Match' => '*' }, '{"title": "any"}');
    is($st, 200, 'If-Match: * matches any session that is there');

    ($st) = http('PATCH', '/api/sessions/0190e000-0000-7000-8000-0000000000e9',
                 { 'If-Match' => '*' }, '{"title": "none"}');
    is($st, 404, 'If-Match on a session that is not there is 404');
}

sub check_request_ids {
    my ($st, $h, $body) = http('GET', '/api/nowhere');
    is($st, 404, 'an unknown resource is 404');
    like($h->{'x-request-id'}, qr/^[0-9a-f]{32}$/, 'with X-Request-Id');
    like($body, qr/"request_id":"\Q$h->{'x-request-id'}\E"/,
         'the error body has the same id');

    ($st, $h, $body) = http('POST', '/api/sessions', {}, '{"source_lang": 1}');
    is($st, 400, 'a bad body is 400');
    like($body, qr/"request_id":"\Q$h->{'x-request-id'}\E"/, 'the same id again');

    my ($st2, $h2) = http('GET', '/api/sessions?limit=1');
    is($st2, 200, 'a list is 200');
    like($h2->{'x-request-id'}, qr/^[0-9a-f]{32}$/, 'success has an X-Request-Id too');
    isnt($h2->{'x-request-id'}, $h->{'x-request-id'}, 'each request its own');

    # the block's access log has $request_id: the same id is there
    my $file = "$Test::Nginx::Util::ServRoot/logs/access.log";
    open my $f, '<', $file or do { fail("no access log $file: $!"); return };
    my $access = do { local $/; <$f> };
    like($access, qr/\b\Q$h2->{'x-request-id'}\E\b/, 'and the access log names it');
}

run_tests();

__DATA__

=== TEST 1: 201 has Location and ETag; every answer has X-Request-Id
--- request
POST /api/sessions
{"source_lang": "en", "target_lang": "es"}
--- error_code: 201
--- response_headers_like
Location: ^/api/sessions/[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$
ETag: ^"[0-9a-f]{32}"$
X-Request-Id: ^[0-9a-f]{32}$
--- response_body_like: "source_lang":"en"



=== TEST 2: the Location is the created session
--- init
my ($st, $h, $body) = main::http('POST', '/api/sessions', {},
                                 '{"source_lang": "fr", "target_lang": "de"}');
Test::More::is($st, 201, 'created');
my ($id) = $body =~ /"id":"([^"]+)"/;
Test::More::is($h->{location}, "/api/sessions/$id", 'Location names it');
my ($st2, $h2, $body2) = main::http('GET', $h->{location});
Test::More::is($st2, 200, 'GET of the Location is 200');
Test::More::is($body2, $body, 'and the same session');
Test::More::is($h2->{etag}, $h->{etag}, 'with the same ETag as the 201');
--- request
GET /api/sessions?limit=1
--- error_code: 200



=== TEST 3: ETag, If-None-Match and If-Match of a session
--- init
main::check_etags();
--- request eval
"GET /api/sessions/$main::S"
--- error_code: 200
--- response_headers_like
ETag: ^"[0-9a-f]{32}"$



=== TEST 4: X-Request-Id: header, error body and access log agree
--- http_config
    chathistory_database_url "$TEST_NGINX_DATABASE_URL";
    log_format with_id '$remote_addr [$time_local] "$request" $status $request_id';
--- config
    access_log logs/access.log with_id;
    location /api/ { chathistory_api; }
--- init
main::check_request_ids();
--- request
GET /api/sessions/not-a-uuid
--- error_code: 400
--- response_headers_like
X-Request-Id: ^[0-9a-f]{32}$
--- response_body_like: ^\{"error":\{"code":"invalid_request","message":"the id in the path is not a UUID","request_id":"[0-9a-f]{32}"\}\}$



=== TEST 5: the key gate's 401 has X-Request-Id and request_id too
--- http_config
    chathistory_database_url "$TEST_NGINX_DATABASE_URL";
--- config
    location /v1/ { chathistory_auth api_key; chathistory_api; }
--- request
GET /v1/sessions
--- error_code: 401
--- response_headers_like
X-Request-Id: ^[0-9a-f]{32}$
--- response_body_like: ^\{"error":\{"code":"unauthorized","message":"an API key is required","request_id":"[0-9a-f]{32}"\}\}$



=== TEST 6: CORS is off by default: no headers, OPTIONS is 405
--- more_headers
Origin: https://app.example
Access-Control-Request-Method: POST
--- request eval
["OPTIONS /api/sessions", "GET /api/sessions?limit=1"]
--- error_code eval
[405, 200]
--- response_headers eval
["Access-Control-Allow-Origin: \nAllow: GET, HEAD, POST", "Access-Control-Allow-Origin: "]



=== TEST 7: a listed origin gets its preflight and its headers
--- http_config
    chathistory_database_url "$TEST_NGINX_DATABASE_URL";
--- config
    location /api/ {
        chathistory_cors_origin https://app.example https://other.example;
        chathistory_cors_max_age 1h;
        chathistory_api;
    }
--- more_headers
Origin: https://app.example
Access-Control-Request-Method: PATCH
Access-Control-Request-Headers: if-match, content-type
--- request
OPTIONS /api/sessions/0190e000-0000-7000-8000-0000000000e1
--- error_code: 204
--- response_headers
Access-Control-Allow-Origin: https://app.example
Access-Control-Allow-Methods: GET, HEAD, PATCH, DELETE
Access-Control-Allow-Headers: Authorization, Content-Type, If-Match, If-None-Match, X-API-Key
Access-Control-Max-Age: 3600
Vary: Origin
--- response_headers_like
X-Request-Id: ^[0-9a-f]{32}$
--- response_body



=== TEST 8: an answer to a listed origin exposes the API's headers; others get none
--- http_config
    chathistory_database_url "$TEST_NGINX_DATABASE_URL";
--- config
    location /api/ {
        chathistory_cors_origin https://app.example;
        chathistory_api;
    }
--- more_headers eval
["Origin: https://app.example", "Origin: https://evil.example", "Origin: https://app.example"]
--- request eval
["GET /api/sessions/$ENV{TEST_NGINX_S}", "GET /api/sessions/$ENV{TEST_NGINX_S}", "GET /api/nowhere"]
--- error_code eval
[200, 200, 404]
--- response_headers eval
["Access-Control-Allow-Origin: https://app.example\nAccess-Control-Expose-Headers: ETag, Location, X-Request-Id, Allow, Retry-After, WWW-Authenticate\nVary: Origin",
 "Access-Control-Allow-Origin: \nVary: Origin",
 "Access-Control-Allow-Origin: https://app.example"]



=== TEST 9: any origin with "*"; an OPTIONS that is no preflight stays 405
--- http_config
    chathistory_database_url "$TEST_NGINX_DATABASE_URL";
--- config
    location /api/ { chathistory_cors_origin *; chathistory_api; }
--- more_headers eval
["Origin: https://any.example\nAccess-Control-Request-Method: GET", "Origin: https://any.example", ""]
--- request eval
["OPTIONS /api/health", "OPTIONS /api/health", "OPTIONS /api/nowhere"]
--- error_code eval
[204, 405, 404]
--- response_headers eval
["Access-Control-Allow-Origin: *\nAccess-Control-Allow-Methods: GET, HEAD\nVary: ",
 "Access-Control-Allow-Origin: *",
 "Access-Control-Allow-Origin: *"]



=== TEST 10: on the gateway, the preflight needs no key; the request does
--- http_config
    chathistory_database_url "$TEST_NGINX_DATABASE_URL";
    chathistory_auth_cache zone=conv_keys:1m;
--- config
    location /v1/ {
        chathistory_auth api_key;
        chathistory_cors_origin https://app.example;
        chathistory_api;
    }
--- more_headers eval
["Origin: https://app.example\nAccess-Control-Request-Method: GET\nAccess-Control-Request-Headers: authorization",
 "Origin: https://app.example"]
--- request eval
["OPTIONS /v1/sessions", "GET /v1/sessions"]
--- error_code eval
[204, 401]
--- response_headers eval
["Access-Control-Allow-Origin: https://app.example\nAccess-Control-Allow-Methods: GET, HEAD, POST",
 "Access-Control-Allow-Origin: https://app.example"]



=== TEST 11: an origin must be scheme://host[:port]
--- config
    location /api/ { chathistory_cors_origin app.example; chathistory_api; }
--- request
GET /api/health
--- must_die
--- error_log
invalid origin "app.example"



=== TEST 12: "*" goes alone
--- config
    location /api/ { chathistory_cors_origin * https://app.example; chathistory_api; }
--- request
GET /api/health
--- must_die
--- error_log
takes "*" alone



=== TEST 13: health: the database answers
--- request eval
["GET /api/health", "HEAD /api/health"]
--- error_code eval
[200, 200]
--- response_headers eval
["Content-Type: application/json", "Content-Type: application/json"]
--- response_body eval
[qq({"status":"ok","database":"ok"}\n), ""]



=== TEST 14: health follows the database down and up
--- http_config
    chathistory_database_url "$TEST_NGINX_DATABASE_URL";
    chathistory_database_pool_size 2;
--- config
    location /api/ { chathistory_api; }
    location /db/ { proxy_pass http://127.0.0.1:$TEST_NGINX_DB_CONTROL_PORT/; }
--- request eval
["GET /api/health", "POST /db/stop\n", "GET /api/health", "POST /db/start\n", "GET /api/health"]
--- error_code eval
[200, 200, 503, 200, 200]
--- response_body_like eval
[qr/^\{"status":"ok","database":"ok"\}$/, qr/stop ok/,
 qr/^\{"status":"unavailable","database":"unavailable"\}$/, qr/start ok/,
 qr/^\{"status":"ok","database":"ok"\}$/]
--- no_error_log
[alert]
[crit]



=== TEST 15: health does not wait for a database that never answers
--- http_config
    chathistory_database_url "postgresql://postgres@127.0.0.1:$TEST_NGINX_SILENT_PORT/nothing?connect_timeout=30";
    chathistory_database_connect_timeout 20s;
--- request
GET /api/health
--- error_code: 503
--- response_body
{"status":"unavailable","database":"unavailable"}
--- timeout: 5
--- error_log
the database did not answer within 1000 ms
--- no_error_log
[alert]
[crit]
