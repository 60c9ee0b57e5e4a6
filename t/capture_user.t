# The capture's end user: chathistory_capture_user_id (a header, an
# argument, any variable) gives a session that has no user_id the first
# one a captured request names; a session that has one keeps it.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use File::Temp qw(tempdir);
use Chathistory;

no_shuffle();
no_long_string();

our $S = '0190f100-0000-7000-8000-00000000000';   # sessions: $S . 1..6
sql(<<"SQL");
DELETE FROM jobs WHERE payload->>'message_id' IN
    (SELECT id::text FROM messages WHERE session_id::text LIKE '$S%');
DELETE FROM sessions WHERE id::text LIKE '$S%';
INSERT INTO sessions (id, org_id, source_lang, target_lang)
    SELECT ('$S' || n)::uuid, id, 'en', 'es'
    FROM organizations, generate_series(1, 6) n WHERE name = 'default';
UPDATE sessions SET user_id = 'zoe' WHERE id = '${S}3';
SQL

my $spool = tempdir(CLEANUP => 1);
chmod 0777, $spool;

add_block_preprocessor(sub {
    my $block = shift;
    my $url = $ENV{TEST_NGINX_DATABASE_URL};

    $block->set_value("http_config",
        "chathistory_database_url \"$url\";\nchathistory_spool_path $spool;\n");
    $block->set_value("config", <<'_EOC_' . ($block->config // ''));
    location = /upstream/ok {
        default_type application/json;
        return 200 '{"transcript":"hello","translation":"hola"}';
    }
    location /api/ { chathistory_api; }
_EOC_
    if (!defined $block->no_error_log && !defined $block->error_log) {
        $block->set_value("no_error_log", "[error]\n[crit]\n[alert]\n");
    }
});

sub user_of { sql("SELECT coalesce(user_id, '-') FROM sessions WHERE id = '$S$_[0]'") }

run_tests();

is(sql_eventually("SELECT count(*) FROM messages WHERE session_id::text LIKE '$S%'", 8), 8,
   "every captured request was recorded");

__DATA__

=== TEST 1: a header names the user: the session takes it, then keeps it
--- config
    location /pipeline/ {
        chathistory_capture on;
        chathistory_capture_user_id $http_x_user_id;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream/;
    }
--- more_headers eval
["X-User-Id: alice", "X-User-Id: bob", ""]
--- request eval
["GET /pipeline/ok?session_id=${main::S}1", "GET /pipeline/ok?session_id=${main::S}1",
 "GET /api/sessions/${main::S}1"]
--- error_code eval
[200, 200, 200]
--- response_body_like eval
[qr/^\{"transcript":"hello"/, qr/^\{"transcript":"hello"/, qr/"user_id":"alice"/]



=== TEST 2: a session with its own user_id keeps it
--- config
    location /pipeline/ {
        chathistory_capture on;
        chathistory_capture_user_id $http_x_user_id;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream/;
    }
--- more_headers
X-User-Id: mallory
--- request eval
"GET /pipeline/ok?session_id=${main::S}3"
--- error_code: 200
--- response_body_like: ^\{"transcript":"hello"



=== TEST 3: the user of a request after one without is not lost in the session cache
--- config
    location /pipeline/ {
        chathistory_capture on;
        chathistory_capture_session_cache 60s;
        chathistory_capture_user_id $arg_user;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream/;
    }
--- request eval
["GET /pipeline/ok?session_id=${main::S}2", "GET /pipeline/ok?session_id=${main::S}2&user=carol",
 "GET /pipeline/ok?session_id=${main::S}2&user=dave", "GET /api/sessions/${main::S}2"]
--- error_code eval
[200, 200, 200, 200]
--- response_body_like eval
[qr/hello/, qr/hello/, qr/hello/, qr/"user_id":"carol"/]



=== TEST 4: a user_id that is no valid one is not set, and said so
--- config
    location /pipeline/ {
        chathistory_capture on;
        chathistory_capture_user_id $http_x_user_id;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream/;
    }
--- more_headers eval
"X-User-Id: " . ('u' x 201)
--- request eval
"GET /pipeline/ok?session_id=${main::S}4"
--- error_code: 200
--- response_body_like: hello
--- error_log
the request's user_id is not 1 to 200 printable characters, not set
--- no_error_log
[error]



=== TEST 5: without the directive nothing is set
--- config
    location /pipeline/ {
        chathistory_capture on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream/;
    }
--- more_headers
X-User-Id: erin
--- request eval
["GET /pipeline/ok?session_id=${main::S}5", "GET /api/sessions/${main::S}5"]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/hello/, qr/"user_id":null/]



=== TEST 6: what the sessions hold afterwards
--- init
Test::More::is(main::user_of(1), 'alice', 'session 1: the first request\'s user');
Test::More::is(main::user_of(2), 'carol', 'session 2: the first request that named one');
Test::More::is(main::user_of(3), 'zoe', 'session 3: its own, kept');
Test::More::is(main::user_of(4), '-', 'session 4: none, the header was no valid user_id');
Test::More::is(main::user_of(5), '-', 'session 5: none, without the directive');
--- request
GET /api/sessions?limit=1
--- error_code: 200
