# The database goes away under a running nginx and comes back: requests
# get a JSON 503 meanwhile, and the same workers recover by themselves.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use Chathistory;

no_shuffle();
no_long_string();
add_block_preprocessor(\&chathistory_block);

my $id = '0190a000-0000-7000-8000-0000000000d1';
sql("DELETE FROM sessions WHERE id = '$id';"
    . " INSERT INTO sessions (id, org_id, source_lang, target_lang)"
    . " SELECT '$id', id, 'en', 'es' FROM organizations WHERE name = 'default'");

$ENV{TEST_NGINX_SESSION} = $id;
db_control_start();

run_tests();

__DATA__

=== TEST 1: stopped and started behind one nginx
--- http_config
    chathistory_database_url "$TEST_NGINX_DATABASE_URL";
    chathistory_database_pool_size 2;
--- config
    location /api/ { chathistory_api; }
    location /db/ { proxy_pass http://127.0.0.1:$TEST_NGINX_DB_CONTROL_PORT/; }
--- request eval
[
"GET /api/sessions/$ENV{TEST_NGINX_SESSION}",
"POST /db/stop\n",
"GET /api/sessions/$ENV{TEST_NGINX_SESSION}",
"POST /api/sessions\n{\"source_lang\": \"en\", \"target_lang\": \"es\"}",
"GET /api/sessions?limit=1",
"POST /db/start\n",
"GET /api/sessions/$ENV{TEST_NGINX_SESSION}",
"POST /api/sessions\n{\"source_lang\": \"en\", \"target_lang\": \"es\"}",
]
--- error_code eval
[200, 200, 503, 503, 503, 200, 200, 201]
--- response_body_like eval
[
qr/"id":"$ENV{TEST_NGINX_SESSION}"/,
qr/stop ok/,
qr/^\{"error":\{"code":"unavailable","message":"the database is unreachable","request_id":"[0-9a-f]{32}"\}\}$/,
qr/"code":"unavailable"/,
qr/"code":"unavailable"/,
qr/start ok/,
qr/"id":"$ENV{TEST_NGINX_SESSION}"/,
qr/"source_lang":"en"/,
]
--- no_error_log
[alert]
[crit]



=== TEST 2: a database that never answers the connection is 503, not a hang
--- http_config
    chathistory_database_url "postgresql://postgres@127.0.0.1:1/nothing";
--- request
GET /api/sessions
--- error_code: 503
--- response_body_like eval
Chathistory::error_like(q{unavailable}, q{the database is unreachable})
--- error_log
connect failed



=== TEST 3: a bad connection string fails at configuration time
--- http_config
    chathistory_database_url "postgresql://[broken";
--- request
GET /api/sessions
--- must_die
--- error_log
invalid chathistory_database_url



=== TEST 4: the API without a database is a configuration error
--- http_config
--- config
    location /api/ { chathistory_api; }
--- request
GET /api/sessions
--- must_die
--- error_log
"chathistory_api" requires "chathistory_database_url"
