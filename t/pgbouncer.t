# The module through PgBouncer in transaction mode (Debian bookworm's
# 1.18, which keeps no prepared statement across server connections):
# with chathistory_database_prepare off every statement is an unnamed one,
# parsed, bound and run in one round trip, so that it holds whichever
# server connection PgBouncer hands out. Two server connections serve the
# module's four: the sessions API, the capture and search all answer, and
# PgBouncer's own counters show that the transactions went through it.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use File::Temp qw(tempdir);
use Chathistory;
use Chathistory::Helpers qw(free_port wait_until psql_rows read_pid);

no_shuffle();
no_long_string();

my $pgbouncer = '/usr/sbin/pgbouncer';
my $url = $ENV{TEST_NGINX_DATABASE_URL} // die "TEST_NGINX_DATABASE_URL is not set\n";
my ($host, $port, $dbname) = $url =~ m{^postgres(?:ql)?://[^@/]*@([^:/]+):(\d+)/([^?]+)}
    or die "cannot read host, port and database of \"$url\"\n";

my $S = '0190a000-0000-7000-8000-0000000001b';   # sessions: $S . 1..3
sql(<<"SQL");
DELETE FROM jobs WHERE payload->>'message_id' IN
    (SELECT id::text FROM messages WHERE session_id::text LIKE '$S%');
DELETE FROM sessions WHERE id::text LIKE '$S%';
INSERT INTO sessions (id, org_id, source_lang, target_lang)
    SELECT ('$S' || n)::uuid, id, 'en', 'pt-BR'
    FROM organizations, generate_series(1, 3) n WHERE name = 'default';
INSERT INTO messages (id, session_id, org_id, source_lang, target_lang, source_text,
                      translated_text)
    SELECT '0190a000-0000-7000-8000-0000000001c0', s.id, s.org_id, 'en', 'pt-BR', 'a bouncing zeppelin', 'x'
    FROM sessions s WHERE s.id = '${S}1';
SQL

# PgBouncer in front of the suite's database; it refuses to run as root
my $dir = tempdir(CLEANUP => 1);
chmod 0755, $dir;
system("chown", "postgres", $dir) if $> == 0;   # its log and pid file
my $bport = free_port();
my $spool = tempdir(CLEANUP => 1);
chmod 0777, $spool;
open my $ini, '>', "$dir/pgbouncer.ini" or die $!;
print $ini <<"INI";
[databases]
$dbname = host=$host port=$port dbname=$dbname
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bport
unix_socket_dir =
auth_type = trust
auth_file = $dir/users.txt
admin_users = postgres
pool_mode = transaction
default_pool_size = 2
max_client_conn = 100
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
close $ini;
open my $users, '>', "$dir/users.txt" or die $!;
print $users qq{"postgres" ""\n};
close $users;
system(($> == 0 ? ('runuser', '-u', 'postgres', '--') : ()), $pgbouncer, '-d', '-q',
       "$dir/pgbouncer.ini") == 0 or die "pgbouncer did not start\n";
my $bouncer = "postgresql://postgres\@127.0.0.1:$bport/$dbname";
wait_until(10, sub { psql_rows($bouncer, 'SELECT 1') }) or die "pgbouncer does not answer\n";
END { my $pid = read_pid("$dir/pgbouncer.pid"); kill 'TERM', $pid if $pid; }

$ENV{TEST_NGINX_S} = $S;

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config",
        "chathistory_database_url \"$bouncer\";\n"
        . "chathistory_database_prepare " . ($ENV{CH_PREPARE} // "off") . ";\n"
        . "chathistory_database_pool_size 4;\n"
        . "chathistory_spool_path $spool;\n");
    $block->set_value("config", <<'_EOC_');
    location = /upstream/ok {
        default_type application/json;
        return 200 '{"transcript":"good morning","translation":"bom dia","stt_ms":120}';
    }
    location /pipeline/ {
        chathistory_capture on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream/;
    }
    location /api/ { chathistory_api; }
_EOC_
    $block->set_value("no_error_log", "[error]\n[crit]\n[alert]\n")
        unless defined $block->no_error_log;
});

run_tests();

is(sql_eventually("SELECT count(*) FROM messages WHERE session_id = '${S}2'", 3), 3,
   "the three captured messages are in the database");
is(sql("SELECT count(*) FROM sessions WHERE title = 'through pgbouncer'"), 1,
   "the created session is in the database");
my @stats = psql_rows("postgresql://postgres\@127.0.0.1:$bport/pgbouncer", 'SHOW STATS');
my ($row) = grep { $_->[0] eq $dbname } @stats;
cmp_ok($row ? $row->[1] : 0, '>=', 30, "PgBouncer counted the transactions");
sql("DELETE FROM sessions WHERE title = 'through pgbouncer'");

__DATA__

=== TEST 1: a session is created
--- request
POST /api/sessions
{"title": "through pgbouncer", "source_lang": "en", "target_lang": "es"}
--- error_code: 201
--- response_body_like: "title":"through pgbouncer"



=== TEST 2: sessions are read, many times, on whichever server connection
--- request eval
[map { "GET /api/sessions/$ENV{TEST_NGINX_S}" . (1 + $_ % 3) } 1 .. 30]
--- error_code eval
[(200) x 30]



=== TEST 3: a list
--- request
GET /api/sessions?limit=2
--- error_code: 200
--- response_body_like: "next_cursor":"



=== TEST 4: the capture records, three times
--- request eval
[map { "POST /pipeline/ok?session_id=$ENV{TEST_NGINX_S}2\nRIFF" } 1 .. 3]
--- error_code eval
[200, 200, 200]
--- response_headers_like eval
[("X-Chathistory-Message-Id: [0-9a-f-]{36}") x 3]



=== TEST 5: search
--- request
POST /api/search
{"query": "zeppelin", "mode": "keyword"}
--- error_code: 200
--- response_body_like: "source_text":"a bouncing zeppelin"



=== TEST 6: messages of a session
--- request
GET /api/sessions/0190a000-0000-7000-8000-0000000001b1/messages
--- error_code: 200
--- response_body_like: "source_text":"a bouncing zeppelin"
