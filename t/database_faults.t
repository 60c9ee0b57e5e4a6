# Slow statements, clients that leave, backends that are killed: the pool
# answers in bounded time and its connections stay usable.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use Chathistory;

no_shuffle();
no_long_string();
add_block_preprocessor(\&chathistory_block);

my $id = '0190a000-0000-7000-8000-0000000000f1';
sql("DELETE FROM sessions WHERE id = '$id';"
    . " INSERT INTO sessions (id, org_id, source_lang, target_lang)"
    . " SELECT '$id', id, 'en', 'es' FROM organizations WHERE name = 'default'");

$ENV{TEST_NGINX_SESSION} = $id;
db_control_start();

our $Control = <<'_EOC_';
    location /api/ { chathistory_api; }
    location /db/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_DB_CONTROL_PORT/;
        proxy_set_header X-Nginx-Port $server_port;
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: a statement slower than chathistory_database_timeout is 503
--- http_config
    chathistory_database_url "$TEST_NGINX_DATABASE_URL";
    chathistory_database_pool_size 1;
    chathistory_database_timeout 300ms;
--- config eval: $::Control
--- request eval
[
"POST /db/lock\n",
"GET /api/sessions/$ENV{TEST_NGINX_SESSION}",
"POST /db/unlock\n",
"GET /api/sessions/$ENV{TEST_NGINX_SESSION}",
]
--- error_code eval
[200, 503, 200, 200]
--- response_body_like eval
[
qr/lock ok/,
qr/^\{"error":\{"code":"unavailable","message":"the database is too busy to answer in time","request_id":"[0-9a-f]{32}"\}\}$/,
qr/unlock ok/,
qr/"id":"$ENV{TEST_NGINX_SESSION}"/,
]
--- no_error_log
[alert]
[crit]



=== TEST 2: a client that leaves mid-statement gives its connection back
--- http_config
    chathistory_database_url "$TEST_NGINX_DATABASE_URL";
    chathistory_database_pool_size 1;
    chathistory_database_queue_timeout 2s;
--- config eval: $::Control
--- request eval
[
"POST /db/lock\n",
"POST /db/abandon\nGET /api/sessions/$ENV{TEST_NGINX_SESSION} HTTP/1.1\r\nHost: localhost\r\n\r\n",
"POST /db/unlock\n",
"GET /api/sessions/$ENV{TEST_NGINX_SESSION}",
"GET /api/sessions/$ENV{TEST_NGINX_SESSION}",
]
--- error_code eval
[200, 200, 200, 200, 200]
--- response_body_like eval
[
qr/lock ok/,
qr/abandon ok/,
qr/unlock ok/,
qr/"id":"$ENV{TEST_NGINX_SESSION}"/,
qr/"id":"$ENV{TEST_NGINX_SESSION}"/,
]
--- no_error_log
[alert]
[crit]



=== TEST 3: backends killed under an idle pool are replaced
--- http_config
    chathistory_database_url "$TEST_NGINX_DATABASE_URL";
    chathistory_database_pool_size 2;
--- config eval: $::Control
--- request eval
[
"GET /api/sessions/$ENV{TEST_NGINX_SESSION}",
"POST /db/terminate\n",
"GET /api/sessions/$ENV{TEST_NGINX_SESSION}",
"GET /api/sessions?limit=1",
]
--- error_code eval
[200, 200, 200, 200]
--- no_error_log
[alert]
[crit]



=== TEST 4: waiters beyond the queue's length are 503 at once
--- http_config
    chathistory_database_url "$TEST_NGINX_DATABASE_URL";
    chathistory_database_pool_size 1;
    chathistory_database_queue 0;
    chathistory_database_timeout 2s;
--- config eval: $::Control
--- request eval
[
"POST /db/lock\n",
"POST /db/abandon\nGET /api/sessions/$ENV{TEST_NGINX_SESSION} HTTP/1.1\r\nHost: localhost\r\n\r\n",
"GET /api/sessions/$ENV{TEST_NGINX_SESSION}",
"POST /db/unlock\n",
]
--- error_code eval
[200, 200, 503, 200]
--- response_body_like eval
[
qr/lock ok/,
qr/abandon ok/,
qr/^\{"error":\{"code":"unavailable","message":"the database is too busy to answer in time","request_id":"[0-9a-f]{32}"\}\}$/,
qr/unlock ok/,
]
--- no_error_log
[alert]
[crit]



=== TEST 5: statements a pooler's new server connection lacks are prepared again
--- http_config eval
"chathistory_database_url \"" . main::pgbouncer_start() . "\";
 chathistory_database_pool_size 1;"
--- config eval: $::Control
--- request eval
[
"GET /api/sessions/$ENV{TEST_NGINX_SESSION}",
"POST /db/terminate\n",
"GET /api/sessions/$ENV{TEST_NGINX_SESSION}",
"GET /api/sessions/$ENV{TEST_NGINX_SESSION}",
]
--- error_code eval
[200, 200, 200, 200]
--- no_error_log
[alert]
[crit]



=== TEST 6: idle connections are closed after chathistory_database_keepalive_timeout
--- http_config
    chathistory_database_url "$TEST_NGINX_DATABASE_URL";
    chathistory_database_pool_size 1;
    chathistory_database_keepalive_timeout 100ms;
--- config eval: $::Control
--- request eval
[
"GET /api/sessions/$ENV{TEST_NGINX_SESSION}",
"POST /db/backends\n",
"GET /api/sessions/$ENV{TEST_NGINX_SESSION}",
]
--- error_code eval
[200, 200, 200]
--- response_body_like eval
[qr/"id"/, qr/^backends 0$/, qr/"id"/]



=== TEST 7: and kept until then
--- http_config
    chathistory_database_url "$TEST_NGINX_DATABASE_URL";
    chathistory_database_pool_size 1;
--- config eval: $::Control
--- request eval
[
"GET /api/sessions/$ENV{TEST_NGINX_SESSION}",
"POST /db/backends\n",
]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/"id"/, qr/^backends 1$/]
