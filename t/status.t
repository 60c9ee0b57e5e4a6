# chathistory_status: Prometheus text metrics of the API, the pool, the
# capture and the job queue, kept for all workers in shared memory.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use File::Temp qw(tempdir);
use Chathistory;

no_shuffle();
no_long_string();

our $S = '0190a000-0000-7000-8000-0000000000e1';
my $spool = tempdir(CLEANUP => 1);
chmod 0777, $spool;
sql(<<"SQL");
DELETE FROM jobs WHERE kind = 'status_probe'
    OR payload->>'message_id' IN (SELECT id::text FROM messages WHERE session_id = '$S');
DELETE FROM sessions WHERE id = '$S';
INSERT INTO sessions (id, org_id, source_lang, target_lang)
    SELECT '$S', id, 'en', 'fr' FROM organizations WHERE name = 'default';
INSERT INTO jobs (kind, status, run_at) VALUES
    ('status_probe', 'queued', now() - interval '1 hour'),
    ('status_probe', 'queued', now() + interval '1 hour'),
    ('status_probe', 'failed', now());
SQL
# a queued probe left behind, dated an hour ahead, would keep a later suite's
# `chathistory-worker run --drain` waiting for it
my $parent = $$;
END { local $?; sql("DELETE FROM jobs WHERE kind = 'status_probe'") if $$ == $parent }

our $Config = <<'_EOC_';
    location = /upstream/ok {
        default_type application/json;
        return 200 '{"transcript":"hello","translation":"bonjour","model_used":"m"}';
    }
    location = /upstream/text {
        default_type text/plain;
        return 200 'hello';
    }
    location /pipeline/ {
        chathistory_capture on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream/;
    }
    location /api/ { chathistory_api; }
    location = /metrics { chathistory_status; }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config",
            "chathistory_database_url \"$ENV{TEST_NGINX_DATABASE_URL}\";\n");
    }

    if (!defined $block->config) {
        $block->set_value("config", $::Config);
    }

    if ($block->config =~ /chathistory_capture/) {
        $block->set_value("http_config",
            $block->http_config . "chathistory_spool_path $spool;\n");
    }

    if (!defined $block->no_error_log && !defined $block->error_log) {
        $block->set_value("no_error_log", "[error]\n[crit]\n[alert]\n");
    }
});

run_tests();

SKIP: {
skip "valgrind mode stops nginx after every block", 2 if $ENV{TEST_NGINX_USE_VALGRIND};

# The last block's nginx still runs: the message it recorded is written
# after the answer, so the counter is awaited.
my $metrics = metrics_eventually(server_port(),
                                 'chathistory_messages_total{outcome="stored"}', 1);
like($metrics, qr/^chathistory_messages_total\{outcome="stored"\} 1$/m,
     "the recorded message is counted as stored once it is in the database");
like($metrics, qr/^chathistory_database_queries_total\{outcome="ok"\} [1-9]\d*$/m,
     "statements are counted");
}

__DATA__

=== TEST 1: the API's requests, by route and status
--- request eval
[
    "GET /api/sessions/$::S",
    "GET /api/sessions/$::S",
    "GET /api/sessions/not-a-uuid",
    "DELETE /api/search",
    "GET /api/nowhere",
    "GET /metrics",
]
--- error_code eval
[200, 200, 400, 405, 404, 200]
--- response_headers_like eval
[
    "", "", "", "", "",
    'Content-Type: text/plain; version=0\.0\.4',
]
--- response_body_like eval
[
    qr/"id":"\Q$::S\E"/, qr/"id":/, qr/error/, qr/error/, qr/error/,
    qr{(?ms)^\# HELP chathistory_requests_total .*
^\# TYPE chathistory_requests_total counter$
^chathistory_requests_total\{route="none",status="404"\} 1$
^chathistory_requests_total\{route="/sessions/\{session_id\}",status="200"\} 2$
^chathistory_requests_total\{route="/sessions/\{session_id\}",status="400"\} 1$
^chathistory_requests_total\{route="/search",status="405"\} 1$
^\# HELP chathistory_database_connections }
]



=== TEST 2: the pool: statements, connections, in use or idle, waiting
--- request eval
["GET /api/sessions/$::S", "GET /metrics"]
--- error_code eval
[200, 200]
--- response_body_like eval
[
    qr/"id":/,
    qr{(?ms)^chathistory_database_queries_total\{outcome="ok"\} [12]$
.*^chathistory_database_connects_total\{outcome="ok"\} 1$
^chathistory_database_connects_total\{outcome="failed"\} 0$
.*^chathistory_database_connections\{state="busy"\} (?:0$
^chathistory_database_connections\{state="idle"\} 1|1$
^chathistory_database_connections\{state="idle"\} 0)$
.*^chathistory_database_waiting 0$}
]



=== TEST 3: the job queue, read from the database: counts by kind and state, lag
--- request
GET /metrics
--- response_body_like
(?ms)^chathistory_jobs_read_ok 1$
.*^chathistory_jobs\{kind="status_probe",state="failed"\} 1$
^chathistory_jobs\{kind="status_probe",state="queued"\} 2$
.*^chathistory_jobs_lag_seconds\{kind="status_probe"\} 3[56]\d\d\.\d\d\d$



=== TEST 4: the database away: the job queue is not known, the rest is served
--- http_config
chathistory_database_url "postgresql://nobody@127.0.0.1:1/none";
chathistory_database_connect_timeout 1s;
--- request eval
["GET /api/sessions/$::S", "GET /metrics"]
--- error_code eval
[503, 200]
--- response_body_like eval
[
    qr/error/,
    qr{(?ms)^chathistory_database_queries_total\{outcome="unreachable"\} [1-9]$
.*^chathistory_database_connects_total\{outcome="failed"\} [1-9]$
.*^chathistory_requests_total\{route="/sessions/\{session_id\}",status="503"\} 1$
.*^chathistory_jobs_read_ok 0$}
]
--- no_error_log
[crit]
[alert]



=== TEST 5: status without a database: the counters alone
--- http_config
--- config
    location = /metrics { chathistory_status; }
--- request
GET /metrics
--- response_body_like
(?ms)^chathistory_capture_total\{outcome="recorded"\} 0$
.*^chathistory_jobs_read_ok 0$
--- response_body_unlike
chathistory_jobs\{



=== TEST 6: only GET and HEAD
--- request
POST /metrics
hello
--- error_code: 405



=== TEST 7: capture outcomes: recorded, not JSON, unknown session, no session
--- request eval
[
    "GET /pipeline/ok?session_id=$::S",
    "GET /pipeline/text?session_id=$::S",
    "GET /pipeline/ok?session_id=0190a000-0000-7000-8000-0000000000ff",
    "GET /pipeline/ok?session_id=nope",
    "GET /metrics",
]
--- error_code eval
[200, 200, 200, 200, 200]
--- response_body_like eval
[
    qr/bonjour/, qr/hello/, qr/bonjour/, qr/bonjour/,
    qr{(?ms)^chathistory_capture_total\{outcome="recorded"\} 1$
^chathistory_capture_total\{outcome="session_id_not_uuid"\} 1$
^chathistory_capture_total\{outcome="unknown_session"\} 1$
^chathistory_capture_total\{outcome="upstream_not_2xx"\} 0$
^chathistory_capture_total\{outcome="no_body"\} 0$
^chathistory_capture_total\{outcome="encoded"\} 0$
^chathistory_capture_total\{outcome="too_large"\} 0$
^chathistory_capture_total\{outcome="not_json"\} 1$}
]
