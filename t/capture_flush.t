# chathistory_capture_flush: recorded messages wait for each other, up to
# the interval, and go to the database in one statement; a worker that
# quits writes what it holds first.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use File::Temp qw(tempdir);
use HTTP::Tiny;
use Chathistory;

no_shuffle();
master_on();
no_long_string();

our $S = '0190a000-0000-7000-8000-0000000000f1';
my $spool = tempdir(CLEANUP => 1);
chmod 0777, $spool;
sql(<<"SQL");
DELETE FROM jobs
    WHERE payload->>'message_id' IN (SELECT id::text FROM messages WHERE session_id = '$S');
DELETE FROM sessions WHERE id = '$S';
INSERT INTO sessions (id, org_id, source_lang, target_lang)
    SELECT '$S', id, 'en', 'fr' FROM organizations WHERE name = 'default';
SQL

# an answer of 20 KB (a file, too long for the configuration): four make
# a statement, a fifth goes in a second
our $Long = '{"transcript":"' . ('word ' x 4000) . '","translation":"bonjour","model_used":"m"}';
our $Config = <<"_EOC_";
    location = /upstream/ok {
        default_type application/json;
        return 200 '{"transcript":"hello","translation":"bonjour","model_used":"m"}';
    }
    location = /upstream/long {
        default_type application/json;
        alias html/long.json;
    }
    location /pipeline/ {
        chathistory_capture on;
        proxy_pass http://127.0.0.1:\$TEST_NGINX_SERVER_PORT/upstream/;
    }
    location = /metrics { chathistory_status; }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value("http_config",
        "chathistory_database_url \"$ENV{TEST_NGINX_DATABASE_URL}\";\n"
        . "chathistory_spool_path $spool;\n"
        . ($block->http_config // ''));
    $block->set_value("config", $::Config);

    if (!defined $block->no_error_log && !defined $block->error_log) {
        $block->set_value("no_error_log", "[error]\n[crit]\n[alert]\n");
    }
});

run_tests();

SKIP: {
skip "valgrind mode stops nginx after every block", 4 if $ENV{TEST_NGINX_USE_VALGRIND};

# The last block's five messages, all waiting when it asked: written once
# the interval has passed, in statements of about 64 KB: two.
my $metrics = metrics_eventually(server_port(),
                                 'chathistory_messages_total{outcome="stored"}', 5);
is(metric($metrics, 'chathistory_messages_total{outcome="stored"}'), 5,
   "the five messages are stored after the interval");
is(metric($metrics, 'chathistory_message_batches_total'), 2,
   "by two statements: four make about 64 KB, the fifth waits for their answer");

# A message recorded just before nginx is told to quit is not left behind.
my $res = HTTP::Tiny->new->get("http://127.0.0.1:" . server_port()
                               . "/pipeline/ok?session_id=$S");
my $id = $res->{headers}{'x-chathistory-message-id'} // '';
like($id, qr/^[0-9a-f-]{36}$/, "one more message is recorded");

open my $pidfile, '<', $Test::Nginx::Util::PidFile;
my ($pid) = (<$pidfile> // '') =~ /^(\d+)/;
kill 'QUIT', $pid if $pid;
for (1 .. 100) {
    last if !$pid || !kill 0, $pid;
    select undef, undef, undef, 0.05;
}
is(sql("SELECT count(*) FROM messages WHERE id = '$id'"), 1,
   "nginx, told to quit, wrote the message it held before it stopped");
}

__DATA__

=== TEST 1: the interval is at most a second
--- http_config
chathistory_capture_flush 2s;
--- must_die
--- error_log
"chathistory_capture_flush" directive must not be longer than 1s



=== TEST 2: no interval: each turn of the event loop writes what it recorded
--- http_config
chathistory_capture_flush 0;
--- request eval
"GET /pipeline/ok?session_id=$::S"
--- response_headers_like
X-Chathistory-Message-Id: [0-9a-f-]{36}
--- response_body_like: bonjour



=== TEST 3: within the interval, messages wait for each other
--- http_config
chathistory_capture_flush 1s;
--- user_files eval
[["long.json", $::Long]]
--- request eval
[ (map { "GET /pipeline/long?session_id=$::S" } 1 .. 5), "GET /metrics" ]
--- error_code eval
[ (200) x 6 ]
--- response_body_like eval
[
    (qr/bonjour/) x 5,
    qr{(?ms)^chathistory_capture_total\{outcome="recorded"\} 5$
.*^chathistory_messages_total\{outcome="stored"\} 0$
.*^chathistory_message_batches_total 0$}
]
