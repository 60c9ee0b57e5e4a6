# Recording behind an API key: a key's request records only into a session
# of the key's own organization. Another organization's session is as
# unknown as one that does not exist (nothing written, no message id
# announced, the answer passed on as without the module), when the session
# is looked up, when it comes from the worker's cache of lookups, and when
# the lookup timed out and only the write can tell.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use File::Temp qw(tempdir);
use HTTP::Tiny;
use Chathistory;

no_shuffle();
no_long_string();

our $A  = '0190c100-0000-7000-8000-00000000000a';   # organizations
our $B  = '0190c100-0000-7000-8000-00000000000b';
our $SA = '0190c100-0000-7000-8000-0000000000a1';   # a session of each
our $SB = '0190c100-0000-7000-8000-0000000000b1';
our $KA = 'chk_captureScopeTestKeyOfOrganizationA_000000';
our $KB = 'chk_captureScopeTestKeyOfOrganizationB_000000';

sql(<<"SQL");
DELETE FROM jobs WHERE payload->>'message_id' IN
    (SELECT id::text FROM messages WHERE org_id IN ('$A', '$B'));
DELETE FROM organizations WHERE id IN ('$A', '$B')
    OR name IN ('capture-scope-a', 'capture-scope-b');
INSERT INTO organizations (id, name)
    VALUES ('$A', 'capture-scope-a'), ('$B', 'capture-scope-b');
INSERT INTO api_keys (org_id, name, key_hash) VALUES
    ('$A', 'cs-a', sha256('$KA'::bytea)), ('$B', 'cs-b', sha256('$KB'::bytea));
INSERT INTO sessions (id, org_id, source_lang, target_lang, audio_enabled)
    VALUES ('$SA', '$A', 'en', 'es', true), ('$SB', '$B', 'en', 'es', true);
SQL

my $spool = tempdir(CLEANUP => 1);
our $Audio = tempdir(CLEANUP => 1);
chmod 0777, $spool, $Audio;

db_control_start();

# A request with the speech fixture as its body, sent as it is.
sub wav_post {
    my ($path, $key) = @_;
    open my $fh, "<:raw", "t/fixtures/audio/pcm16-mono-16k.wav" or die "wav: $!";
    my $body = do { local $/; <$fh> };
    return "POST $path HTTP/1.1\r\nHost: localhost\r\n"
        . ($key ? "Authorization: Bearer $key\r\n" : "")
        . "Content-Type: audio/wav\r\nContent-Length: " . length($body)
        . "\r\nConnection: close\r\n\r\n$body";
}

sub bearer { "Authorization: Bearer $_[0]" }

our $Config = <<'_EOC_';
    location = /upstream {
        default_type application/json;
        return 200 '{"transcript":"said by a","translation":"dicho por a","stt_ms":1}';
    }
    location = /v1/pipeline {
        chathistory_auth api_key;
        chathistory_capture on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream;
    }
    location = /api/pipeline {
        chathistory_capture on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream;
    }
    location /db/ { proxy_pass http://127.0.0.1:$TEST_NGINX_DB_CONTROL_PORT/; }
_EOC_

# Blocks named "(same nginx)" go on with the running nginx and what its
# worker remembers of the sessions it looked up.
add_block_preprocessor(sub {
    my $block = shift;

    if ($block->name =~ /\(same nginx\)/) {
        # under valgrind, nginx stops after each block and its memory with it
        $block->set_value("skip_eval", "1: \$ENV{TEST_NGINX_USE_VALGRIND}");
        return;
    }

    $block->set_value("http_config",
        "chathistory_database_url \"$ENV{TEST_NGINX_DATABASE_URL}\";\n"
        . "chathistory_audio_storage_path $Audio;\n"
        . "chathistory_spool_path $spool;\n"
        . "chathistory_capture_lookup_timeout 300ms;\n"
        . ($block->http_config // ''));
    $block->set_value("config", $Config . ($block->config // ''));

    chathistory_block($block);
});

run_tests();

is(sql_eventually("SELECT count(*) FROM messages WHERE session_id = '$SA'", 2), 2,
   "org A's key recorded into org A's session");
is(sql_eventually("SELECT count(*) FROM messages WHERE session_id = '$SB'"
                  . " AND source_text = 'said by a'", 2), 2,
   "org B's session holds what org B's key and the unkeyed location recorded");
is(sql("SELECT count(*) FROM messages WHERE session_id = '$SB' AND org_id <> '$B'"), 0,
   "no message of org B's session belongs to another organization");
my @files = glob "$Audio/$SB/*.opus";
is(scalar @files, 1, "org B's session has the audio of its own message only");

__DATA__

=== TEST 1: a key records into a session of its own organization
--- raw_request eval
main::wav_post("/v1/pipeline?session_id=$::SA", $::KA)
--- error_code: 200
--- response_headers_like
X-Chathistory-Message-Id: [0-9a-f-]{36}
--- response_body chomp
{"transcript":"said by a","translation":"dicho por a","stt_ms":1}



=== TEST 2: another organization's session is unknown to a key: passed on, not recorded, not announced
--- raw_request eval
main::wav_post("/v1/pipeline?session_id=$::SB", $::KA)
--- error_code: 200
--- response_headers
!X-Chathistory-Message-Id
--- response_body chomp
{"transcript":"said by a","translation":"dicho por a","stt_ms":1}
--- error_log
not recording: the session does not exist
--- no_error_log
[error]
[crit]
[alert]



=== TEST 3: org B's key records into org B's session, which the worker now remembers
--- request eval
"POST /v1/pipeline?session_id=$::SB"
--- more_headers eval
main::bearer($::KB)
--- error_code: 200
--- response_headers_like
X-Chathistory-Message-Id: [0-9a-f-]{36}



=== TEST 4: the remembered session is still unknown to org A's key (same nginx)
--- request eval
"POST /v1/pipeline?session_id=$::SB"
--- more_headers eval
main::bearer($::KA)
--- error_code: 200
--- response_headers
!X-Chathistory-Message-Id
--- error_log
not recording: the session does not exist
--- no_error_log
[error]
[crit]
[alert]



=== TEST 5: a lookup that takes too long leaves the check to the write
--- init
HTTP::Tiny->new->post("http://127.0.0.1:$ENV{TEST_NGINX_DB_CONTROL_PORT}/lock")->{success}
    or die "cannot lock the sessions table\n";
--- request eval
"POST /v1/pipeline?session_id=$::SB"
--- more_headers eval
main::bearer($::KA)
--- error_code: 200
--- error_log
the session lookup took too long
--- no_error_log
[error]
[crit]
[alert]



=== TEST 6: and the write refuses another organization's session (same nginx)
--- request
POST /db/unlock
--- error_code: 200
--- wait: 1
--- error_log eval
qr/not recorded: session \Q$::SB\E does not exist/
--- no_error_log
[error]
[crit]
[alert]



=== TEST 7: an unkeyed capture location records into any session it is given
--- raw_request eval
main::wav_post("/api/pipeline?session_id=$::SB")
--- error_code: 200
--- response_headers_like
X-Chathistory-Message-Id: [0-9a-f-]{36}
--- response_body chomp
{"transcript":"said by a","translation":"dicho por a","stt_ms":1}



=== TEST 8: org A's key, known to the key cache, records into its session
--- http_config
    chathistory_auth_cache zone=chathistory_keys:1m valid=30s invalid=30s;
--- request eval
"POST /v1/pipeline?session_id=$::SA"
--- more_headers eval
main::bearer($::KA)
--- error_code: 200
--- response_headers_like
X-Chathistory-Message-Id: [0-9a-f-]{36}



=== TEST 9: while the database is away, a message for another organization's session is spooled (same nginx)
--- request eval
["POST /db/stop", "POST /v1/pipeline?session_id=$::SB"]
--- more_headers eval
["", main::bearer($::KA)]
--- error_code eval
[200, 200]
--- wait: 0.5
--- no_error_log
[crit]
[alert]



=== TEST 10: and once it is back, the replay refuses it (same nginx)
--- request
POST /db/start
--- error_code: 200
--- wait: 3
--- error_log eval
qr/not recorded: session \Q$::SB\E does not exist/
--- no_error_log
[crit]
[alert]
