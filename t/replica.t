# Reads on a replica inside one nginx (chathistory_database_replica_url):
# the "replica" here is a second database of the same cluster, migrated
# alike, whose rows differ from the primary's, so that an answer tells
# which one gave it. Search goes to the replica once its lag check has
# passed; sessions and messages only when chathistory_database_replica_reads
# names them; "X-Chathistory-Consistency: primary" keeps a read on the
# primary; a replica that is down is skipped and the primary answers.
# (A real streaming standby, its lag and its promotion: t/faults/failover.t.)

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use Chathistory;
use Chathistory::Helpers qw(psql_rows free_port);

no_shuffle();
no_long_string();

my $url = $ENV{TEST_NGINX_DATABASE_URL} // die "TEST_NGINX_DATABASE_URL is not set\n";
my $worker = $ENV{CHATHISTORY_WORKER} // die "CHATHISTORY_WORKER is not set\n";
(my $admin = $url) =~ s{/[^/?]+(\?|$)}{/postgres$1};
(my $replica = $url) =~ s{/([^/?]+)(\?|$)}{/$1_replica$2};
my ($rdb) = $replica =~ m{/([^/?]+)(?:\?|$)};
psql_rows($admin, qq{DROP DATABASE IF EXISTS "$rdb" WITH (FORCE)});
psql_rows($admin, qq{CREATE DATABASE "$rdb"});
system("$worker migrate --database-url '$replica' --migrations-dir"
       . " '$ENV{CHATHISTORY_MIGRATIONS_DIR}' >/dev/null 2>&1") == 0
    or die "cannot migrate $rdb\n";
END { eval { psql_rows($admin, qq{DROP DATABASE IF EXISTS "$rdb" WITH (FORCE)}) } }

# the same session in both, with a message that says where it is
my $S = '0190a000-0000-7000-8000-0000000001d1';
for my $db ([$url, 'primary'], [$replica, 'replica']) {
    psql_rows($db->[0], "DELETE FROM sessions WHERE id = '$S'");
    psql_rows($db->[0], "INSERT INTO sessions (id, org_id, title, source_lang, target_lang)"
        . " SELECT '$S', id, 'on the $db->[1]', 'en', 'es' FROM organizations"
        . " WHERE name = 'default'");
    psql_rows($db->[0], "INSERT INTO messages (id, session_id, org_id, source_lang,"
        . " target_lang, source_text, translated_text) SELECT chathistory_uuidv7(), id,"
        . " org_id, 'en', 'es', 'quokka seen on the $db->[1]', 'x' FROM sessions"
        . " WHERE id = '$S'");
}
END { eval { sql("DELETE FROM sessions WHERE id = '$S'") } }

$ENV{TEST_NGINX_REPLICA_URL} = $replica;
$ENV{TEST_NGINX_DOWN_URL} = "postgresql://postgres\@127.0.0.1:" . free_port() . "/x";
$ENV{TEST_NGINX_S} = $S;

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config",
        "chathistory_database_url \"$url\";\n" . ($block->http_config // ''));
    $block->set_value("config", "location /api/ { chathistory_api; }\n")
        unless defined $block->config;
    $block->set_value("no_error_log", "[error]\n[crit]\n[alert]\n")
        unless defined $block->no_error_log || defined $block->error_log;
});

# the replica serves once its first check has passed, a few ms after the
# start: the last of a run of searches is the replica's
$ENV{TEST_NGINX_SEARCHES} = 30;

run_tests();

__DATA__

=== TEST 1: search is the replica's once it has passed its lag check
--- http_config
chathistory_database_replica_url "$TEST_NGINX_REPLICA_URL";
--- request eval
[(qq{POST /api/search\n{"query": "quokka", "mode": "keyword"}}) x $ENV{TEST_NGINX_SEARCHES}]
--- error_code eval
[(200) x $ENV{TEST_NGINX_SEARCHES}]
--- response_body_like eval
[(qr/quokka seen on the (?:primary|replica)/) x ($ENV{TEST_NGINX_SEARCHES} - 1),
 qr/quokka seen on the replica/]



=== TEST 2: sessions and messages stay on the primary unless named
--- http_config
chathistory_database_replica_url "$TEST_NGINX_REPLICA_URL";
--- request eval
[(qq{POST /api/search\n{"query": "quokka", "mode": "keyword"}}) x ($ENV{TEST_NGINX_SEARCHES} - 1),
 "GET /api/sessions/$ENV{TEST_NGINX_S}", "GET /api/sessions/$ENV{TEST_NGINX_S}/messages"]
--- response_body_like eval
[(qr/quokka/) x ($ENV{TEST_NGINX_SEARCHES} - 1), qr/"title":"on the primary"/,
 qr/quokka seen on the primary/]



=== TEST 3: chathistory_database_replica_reads sessions messages
--- http_config
chathistory_database_replica_url "$TEST_NGINX_REPLICA_URL";
chathistory_database_replica_reads search sessions messages;
--- request eval
[(qq{POST /api/search\n{"query": "quokka", "mode": "keyword"}}) x ($ENV{TEST_NGINX_SEARCHES} - 1),
 "GET /api/sessions/$ENV{TEST_NGINX_S}", "GET /api/sessions/$ENV{TEST_NGINX_S}/messages"]
--- response_body_like eval
[(qr/quokka/) x ($ENV{TEST_NGINX_SEARCHES} - 1), qr/"title":"on the replica"/,
 qr/quokka seen on the replica/]



=== TEST 4: X-Chathistory-Consistency: primary keeps a read on the primary
--- http_config
chathistory_database_replica_url "$TEST_NGINX_REPLICA_URL";
chathistory_database_replica_reads search sessions messages;
--- more_headers
X-Chathistory-Consistency: primary
--- request eval
[(qq{POST /api/search\n{"query": "quokka", "mode": "keyword"}}) x $ENV{TEST_NGINX_SEARCHES},
 "GET /api/sessions/$ENV{TEST_NGINX_S}"]
--- response_body_like eval
[(qr/quokka seen on the primary/) x $ENV{TEST_NGINX_SEARCHES}, qr/"title":"on the primary"/]



=== TEST 5: a replica that is down is skipped: the primary answers
--- http_config
chathistory_database_replica_url "$TEST_NGINX_DOWN_URL";
chathistory_database_replica_reads search sessions messages;
--- request eval
[(qq{POST /api/search\n{"query": "quokka", "mode": "keyword"}}) x $ENV{TEST_NGINX_SEARCHES},
 "GET /api/sessions/$ENV{TEST_NGINX_S}"]
--- error_code eval
[(200) x ($ENV{TEST_NGINX_SEARCHES} + 1)]
--- response_body_like eval
[(qr/quokka seen on the primary/) x $ENV{TEST_NGINX_SEARCHES}, qr/"title":"on the primary"/]
--- no_error_log
[crit]
[alert]



=== TEST 6: the replica's URL is checked at nginx -t
--- http_config
chathistory_database_replica_url "host=127.0.0.1,127.0.0.2 port=1,2,3";
--- must_die
--- error_log
chathistory_database_replica_url: 2 hosts but 3 ports



=== TEST 7: the reads named must be known ones
--- http_config
chathistory_database_replica_url "$TEST_NGINX_REPLICA_URL";
chathistory_database_replica_reads search audio;
--- must_die
--- error_log
invalid value "audio"
