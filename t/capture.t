# Recording the pipeline: what is recorded, and that the client's answer
# is the upstream's, byte for byte, whatever happens.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use File::Temp qw(tempdir);
use Chathistory;

no_shuffle();
no_long_string();

my $S = '0190a000-0000-7000-8000-0000000000c';   # sessions: $S . 1..9, a..f
sql(<<"SQL");
DELETE FROM jobs WHERE payload->>'message_id' IN
    (SELECT id::text FROM messages WHERE session_id::text LIKE '$S%');
DELETE FROM sessions WHERE id::text LIKE '$S%';
INSERT INTO sessions (id, org_id, source_lang, target_lang)
    SELECT ('$S' || n)::uuid, id, 'en', 'pt-BR'
    FROM organizations, unnest(ARRAY['0','1','2','3','4','5','6','7','8','9','a','b',
                                     'c','d','e','f']) n
    WHERE name = 'default';
UPDATE sessions SET audio_enabled = true WHERE id::text ~ '^${S}[bcdef]\$';
SQL

my $spool = tempdir(CLEANUP => 1);
my $audio = tempdir(CLEANUP => 1);
chmod 0777, $spool, $audio;
my $fixtures = 't/fixtures/audio';

# A request with a binary body, sent as it is.
sub raw_post {
    my ($session, $type, $file) = @_;
    open my $fh, '<:raw', "$fixtures/$file" or die "$file: $!";
    my $body = do { local $/; <$fh> };
    return "POST /pipeline/ok?session_id=$S$session HTTP/1.1\r\nHost: localhost\r\n"
        . "Content-Type: $type\r\nContent-Length: " . length($body)
        . "\r\nConnection: close\r\n\r\n$body";
}
db_control_start();

our $Upstream = <<'_EOC_';
    location = /upstream/ok {
        default_type application/json;
        return 200 '{"transcript":"good morning","translation":"bom dia","stt_ms":120,"translate_ms":30.4,"tts_ms":400,"model_used":"whisper+nllb","audio":"UklGRg=="}';
    }
    location = /upstream/aliases {
        default_type application/json;
        return 200 '{"source_text":"thank you","translated_text":"obrigado","timings":{"stt_ms":11,"translate_ms":22,"tts_ms":33},"model":"m2"}';
    }
    location = /upstream/partial {
        default_type application/json;
        return 200 '{"translation":"sem texto","stt_ms":5}';
    }
    location = /upstream/broken {
        default_type application/json;
        return 200 '{"transcript":"cut';
    }
    location = /upstream/error {
        default_type application/json;
        return 500 '{"error":"model crashed"}';
    }
    location = /upstream/text {
        default_type text/plain;
        return 200 'transcript: hello';
    }
    location /api/ { chathistory_api; }
    location /db/ { proxy_pass http://127.0.0.1:$TEST_NGINX_DB_CONTROL_PORT/; }
_EOC_
# a UTF-16 surrogate in UTF-8 form: PostgreSQL refuses it (fuzz/regressions/record/)
$Upstream .= qq{    location = /upstream/surrogate {
        default_type application/json;
        return 200 '{"transcript":"caf\xed\xa0\x80","translation":"x"}';
    }
};

add_block_preprocessor(sub {
    my $block = shift;
    my $url = $ENV{TEST_NGINX_DATABASE_URL};

    $block->set_value("http_config",
        "chathistory_database_url \"$url\";\n"
        . "chathistory_audio_storage_path $audio;\n"
        . (defined $block->must_die ? "" : "chathistory_spool_path $spool;\n")
        . ($block->http_config // ''));

    return if defined $block->must_die;

    $block->set_value("config", $::Upstream . ($block->config // <<'_EOC_'));
    location /pipeline/ {
        chathistory_capture on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream/;
    }
_EOC_

    if (!defined $block->no_error_log && !defined $block->error_log) {
        $block->set_value("no_error_log", "[error]\n[crit]\n[alert]\n");
    }
});

run_tests();

# the last block left the database stopped
system($ENV{TEST_NGINX_PG_START}) == 0 or die "cannot start the database\n" if $ENV{TEST_NGINX_PG_START};

# What is in the database afterwards.
my $row = sql_eventually("SELECT count(*) FROM messages WHERE session_id = '${S}1'", 1);
is($row, 1, "one message recorded for the session");
is_deeply([sql("SELECT source_text, translated_text, stt_ms, translate_ms, tts_ms,"
               . " model_used, source_lang, target_lang, audio_path IS NULL"
               . " FROM messages WHERE session_id = '${S}1'")],
          [['good morning', 'bom dia', 120, 30, 400, 'whisper+nllb', 'en', 'pt-BR', 't']],
          "its texts, timings, model and the session's languages");
is(sql("SELECT count(*) FROM jobs j JOIN messages m ON j.payload->>'message_id' = m.id::text"
       . " WHERE j.kind = 'embed_message' AND m.session_id = '${S}1'"), 1,
   "its embedding job was queued with it");

is(sql_eventually("SELECT count(*) FROM messages WHERE session_id = '${S}2'", 1), 1,
   "aliases and nested timings are recorded");
is_deeply([sql("SELECT source_text, translated_text, stt_ms, translate_ms, tts_ms, model_used"
               . " FROM messages WHERE session_id = '${S}2'")],
          [['thank you', 'obrigado', 11, 22, 33, 'm2']], "with their values");

for my $n (3 .. 9) {
    is(sql("SELECT count(*) FROM messages WHERE session_id = '$S$n'"), 0,
       "nothing recorded for session $n");
}

SKIP: {
skip "TEST_NGINX_PG_STOP is not set: there was no outage", 1 unless $ENV{TEST_NGINX_PG_STOP};
is(sql_eventually("SELECT count(*) FROM messages WHERE session_id = '${S}a'", 3, 10), 3,
   "the messages of the outage were replayed from the spool");
}
opendir(my $dir, $spool);
is_deeply([grep { !/^\./ } readdir $dir], [], "and the spool is empty again");

# The audio of sessions that keep it.
sub audio_of {
    my ($session) = @_;
    sql_eventually("SELECT count(*) FROM messages WHERE session_id = '$S$session'", 1, 30);
    my ($row) = sql("SELECT id, audio_path, audio_ms FROM messages"
                    . " WHERE session_id = '$S$session'");
    return $row ? @$row : ();
}

for my $case (['b', 'a WAV', 2557], ['c', 'a multipart body', 2557],
              ['d', 'an Ogg Opus upload', 2557], ['f', 'a body in a temporary file', 2557])
{
    my ($session, $what, $ms) = @$case;
    my ($id, $path, $got_ms) = audio_of($session);
    is($path, "$S$session/$id.opus", "$what: audio_path is {session_id}/{message_id}.opus");
    ok(defined $got_ms && abs($got_ms - $ms) <= 40, "$what: audio_ms is the duration")
        or diag("audio_ms: " . ($got_ms // 'NULL'));
    my $file = "$audio/" . ($path // 'none');
    ok(-s $file, "$what: the file is there");
    SKIP: {
        skip "opusinfo is not installed", 1 unless -x '/usr/bin/opusinfo';
        my $info = `opusinfo '$file' 2>&1`;
        unlike($info, qr/WARNING|ERROR|error/, "$what: opusinfo accepts it");
    }
}

{
    my ($id) = audio_of('d');
    open my $a, '<:raw', "$audio/$S" . "d/$id.opus";
    open my $b, '<:raw', "$fixtures/speech.opus";
    local $/;
    ok(<$a> eq <$b>, "an Ogg Opus upload is stored as it came");
}

my ($bad_id, $bad_path) = audio_of('e');
ok($bad_id && (!defined $bad_path || $bad_path eq ''),
   "a broken WAV leaves a message without audio");
opendir(my $adir, $audio);
is_deeply([sort grep { /\.tmp$/ } readdir $adir], [], "no temporary audio files are left");

__DATA__

=== TEST 1: without session_id the answer passes untouched and nothing is recorded
--- request
POST /pipeline/ok
RIFF
--- error_code: 200
--- response_headers
Content-Type: application/json
Content-Length: 146
!X-Chathistory-Message-Id
--- response_body chomp
{"transcript":"good morning","translation":"bom dia","stt_ms":120,"translate_ms":30.4,"tts_ms":400,"model_used":"whisper+nllb","audio":"UklGRg=="}



=== TEST 2: a known session's answer is recorded and announced
--- request
POST /pipeline/ok?session_id=0190a000-0000-7000-8000-0000000000c1
RIFF
--- error_code: 200
--- response_headers_like
X-Chathistory-Message-Id: [0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}
--- response_headers
Content-Length: 146
--- response_body chomp
{"transcript":"good morning","translation":"bom dia","stt_ms":120,"translate_ms":30.4,"tts_ms":400,"model_used":"whisper+nllb","audio":"UklGRg=="}



=== TEST 3: the other field names and timings under "timings" are understood
--- request
POST /pipeline/aliases?session_id=0190a000-0000-7000-8000-0000000000c2
--- error_code: 200
--- response_headers_like
X-Chathistory-Message-Id: [0-9a-f-]{36}
--- response_body chomp
{"source_text":"thank you","translated_text":"obrigado","timings":{"stt_ms":11,"translate_ms":22,"tts_ms":33},"model":"m2"}



=== TEST 4: an answer without a transcript is passed on and not recorded
--- request
POST /pipeline/partial?session_id=0190a000-0000-7000-8000-0000000000c3
--- error_code: 200
--- response_body chomp
{"translation":"sem texto","stt_ms":5}
--- error_log
not recorded: the upstream's answer has no transcript or no translation in it
--- no_error_log
[error]



=== TEST 5: a transcript that is not UTF-8 is passed on and not recorded
--- request
POST /pipeline/surrogate?session_id=0190a000-0000-7000-8000-0000000000c3
--- error_code: 200
--- response_body eval
"{\"transcript\":\"caf\xed\xa0\x80\",\"translation\":\"x\"}"
--- error_log
not recorded: the upstream's answer has no transcript or no translation in it
--- no_error_log
[error]



=== TEST 6: malformed JSON is passed on and not recorded
--- request
POST /pipeline/broken?session_id=0190a000-0000-7000-8000-0000000000c4
--- error_code: 200
--- response_body chomp
{"transcript":"cut
--- error_log
not recorded: the upstream's answer has malformed JSON
--- no_error_log
[error]



=== TEST 7: an upstream error is passed on and not recorded
--- request
POST /pipeline/error?session_id=0190a000-0000-7000-8000-0000000000c5
--- error_code: 500
--- response_headers
!X-Chathistory-Message-Id
--- response_body chomp
{"error":"model crashed"}
--- error_log
not recording: the upstream did not answer 2xx



=== TEST 8: an answer that is not JSON is passed on and not recorded
--- request
GET /pipeline/text?session_id=0190a000-0000-7000-8000-0000000000c6
--- error_code: 200
--- response_headers
Content-Type: text/plain
!X-Chathistory-Message-Id
--- response_body chomp
transcript: hello
--- error_log
not recording: the answer is not JSON



=== TEST 9: an unknown session is not recorded
--- request
POST /pipeline/ok?session_id=0190a000-0000-7000-8000-00000000dead
--- error_code: 200
--- response_headers
!X-Chathistory-Message-Id
--- response_body_like: ^\{"transcript":"good morning"
--- error_log
not recording: the session does not exist



=== TEST 10: a malformed session_id is not recorded
--- request
POST /pipeline/ok?session_id=c7
--- error_code: 200
--- response_headers
!X-Chathistory-Message-Id
--- error_log
session_id is not a UUID, not recording



=== TEST 11: with history off nginx behaves as without the module
--- http_config
    chathistory_history_enabled off;
--- request
POST /pipeline/ok?session_id=0190a000-0000-7000-8000-0000000000c7
--- error_code: 200
--- response_headers
!X-Chathistory-Message-Id
Content-Length: 146



=== TEST 12: an answer over chathistory_capture_max_size is passed on and not recorded
--- config
    location /pipeline/ {
        chathistory_capture on;
        chathistory_capture_max_size 100;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream/;
    }
--- request
POST /pipeline/ok?session_id=0190a000-0000-7000-8000-0000000000c8
--- error_code: 200
--- response_headers
!X-Chathistory-Message-Id
Content-Length: 146
--- error_log
not recording: the answer is larger than chathistory_capture_max_size



=== TEST 13: a chunked answer that grows over the limit is not recorded
--- config
    location /pipeline/ {
        chathistory_capture on;
        chathistory_capture_max_size 100;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/chunked/;
    }
    location /chunked/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream/;
        sub_filter_types application/json;
        sub_filter morning evening;
    }
--- request
POST /pipeline/ok?session_id=0190a000-0000-7000-8000-0000000000c9
--- error_code: 200
--- response_body_like: ^\{"transcript":"good evening"
--- error_log
is larger than chathistory_capture_max_size or went to a temporary file
--- no_error_log
[error]



=== TEST 14: while the database is away, the messages wait in the spool, not a warn line each
--- request eval
[
"POST /db/stop\n",
"POST /pipeline/ok?session_id=0190a000-0000-7000-8000-0000000000ca\nRIFF",
"POST /pipeline/ok?session_id=0190a000-0000-7000-8000-0000000000ca\nRIFF",
"POST /pipeline/ok?session_id=0190a000-0000-7000-8000-0000000000ca\nRIFF",
"POST /db/start\n",
]
--- error_code eval
[200, 200, 200, 200, 200]
--- response_headers_like eval
["", "X-Chathistory-Message-Id: [0-9a-f-]{36}", "X-Chathistory-Message-Id: [0-9a-f-]{36}",
 "X-Chathistory-Message-Id: [0-9a-f-]{36}", ""]
--- response_body_like eval
[qr/stop ok/, qr/^\{"transcript":"good morning"/, qr/^\{"transcript":"good morning"/,
 qr/^\{"transcript":"good morning"/, qr/start ok/]
--- wait: 2
--- no_error_log eval
[qr/\[warn\] .*chathistory: message [0-9a-f-]{36} spooled/, "[alert]"]



=== TEST 15: the capture directive needs a spool
--- http_config
--- config
    location /p/ { chathistory_capture on; proxy_pass http://127.0.0.1:1/; }
--- request
GET /p/
--- must_die
--- error_log
"chathistory_capture" requires



=== TEST 16: a WAV request of a session that keeps audio is stored as Ogg Opus
--- raw_request eval
main::raw_post('b', 'audio/wav', 'pcm16-mono-16k.wav')
--- error_code: 200
--- response_headers_like
X-Chathistory-Message-Id: [0-9a-f-]{36}
--- response_body_like: ^\{"transcript":"good morning"
--- wait: 0.5



=== TEST 17: a multipart request's audio part is stored
--- raw_request eval
main::raw_post('c', 'multipart/form-data; boundary=audio-fixture-7f3a', 'multipart-one-wav.txt')
--- error_code: 200
--- response_headers_like
X-Chathistory-Message-Id: [0-9a-f-]{36}
--- wait: 0.5



=== TEST 18: an Ogg Opus request is stored as it is
--- raw_request eval
main::raw_post('d', 'audio/ogg', 'speech.opus')
--- error_code: 200
--- wait: 0.5



=== TEST 19: broken audio: the message is recorded without it
--- raw_request eval
main::raw_post('e', 'audio/wav', 'broken-truncated.wav')
--- error_code: 200
--- response_headers_like
X-Chathistory-Message-Id: [0-9a-f-]{36}
--- wait: 0.5
--- error_log
recorded without audio: truncated
--- no_error_log
[error]



=== TEST 20: a body nginx kept in a temporary file is stored too
--- config
    location /pipeline/ {
        chathistory_capture on;
        client_body_buffer_size 1k;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream/;
    }
--- raw_request eval
main::raw_post('f', 'audio/wav', 'pcm16-mono-16k.wav')
--- error_code: 200
--- wait: 0.5
--- error_log
a client request body is buffered to a temporary file
--- no_error_log
[error]



=== TEST 21: the session and the message are variables, for access logs
--- config
    location /pipeline/ {
        chathistory_capture on;
        add_header X-Logged "$chathistory_session_id $chathistory_message_id";
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream/;
    }
--- request
POST /pipeline/ok?session_id=0190a000-0000-7000-8000-0000000000c0
--- error_code: 200
--- response_headers_like
X-Logged: 0190a000-0000-7000-8000-0000000000c0 [0-9a-f]{8}-[0-9a-f-]{27}



=== TEST 22: a full spool loses the message, and says so loudly
--- http_config
    chathistory_spool_max_messages 0;
--- init
system($ENV{TEST_NGINX_PG_STOP}) == 0 or die "cannot stop the database\n";
--- request
POST /pipeline/ok?session_id=0190a000-0000-7000-8000-0000000000c9
--- error_code: 200
--- response_body_like: ^\{"transcript":"good morning"
--- wait: 1
--- error_log
lost: the spool
--- no_error_log
[alert]
