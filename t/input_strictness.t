# What JSON and times the API takes: strings with a raw control character
# (invalid JSON) or \u0000 (which a text cannot hold, and which used to cut
# the stored text short) are 400, naming the member; times that RFC 3339
# allows and PostgreSQL does not are 400 saying why, before any statement.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use File::Temp ();
use Chathistory;

no_shuffle();
no_long_string();

our $S = '0190c200-0000-7000-8000-000000000001';
our $SAUDIO = '0190c200-0000-7000-8000-000000000002';   # keeps audio
sql(<<"SQL");
DELETE FROM sessions WHERE id IN ('$S', '$SAUDIO');
INSERT INTO sessions (id, org_id, title, source_lang, target_lang, audio_enabled)
    SELECT s.id::uuid, o.id, s.title, 'en', 'es', s.audio
    FROM organizations o, (VALUES ('$S', 'kept', false), ('$SAUDIO', 'audio', true))
         AS s(id, title, audio)
    WHERE o.name = 'default';
SQL

our $Audio = File::Temp::tempdir(CLEANUP => 1);
chmod 0777, $Audio;

# A pipeline request with a WAV fixture as its body.
sub wav_post {
    my ($path) = @_;
    open my $fh, '<:raw', 't/fixtures/audio/pcm16-mono-16k.wav' or die "wav: $!";
    my $body = do { local $/; <$fh> };
    return "POST $path HTTP/1.1\r\nHost: localhost\r\nContent-Type: audio/wav\r\n"
        . "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n$body";
}

add_block_preprocessor(\&chathistory_block);

run_tests();

is(sql("SELECT title FROM sessions WHERE id = '$S'"), 'kept',
   "no refused PATCH changed the title");
is(sql("SELECT count(*) FROM sessions WHERE title LIKE 'abc%'"), 0,
   "no refused POST created a session");
is(sql("SELECT count(*) FROM messages WHERE session_id = '$S'"), 0,
   "the answer with \\u0000 was not recorded");
is(sql_eventually("SELECT count(*) FROM messages WHERE session_id = '$SAUDIO'"
                  . " AND audio_path IS NULL", 1), 1,
   "the message with a body over the audio limit was recorded without audio");
ok(!-e "$Audio/$SAUDIO", "and no audio file was written for it");

__DATA__

=== TEST 1: \u0000 in a string is 400, naming the member
--- request eval
["POST /api/sessions\n{\"source_lang\": \"en\", \"target_lang\": \"es\", \"title\": \"abc\\u0000def\"}",
 "PATCH /api/sessions/$::S\n{\"title\": \"abc\\u0000\"}",
 "POST /api/search\n{\"query\": \"\\u0000\"}",
 "POST /api/search\n{\"query\": \"a\", \"x\": [{\"deep\": \"\\u0000\"}]}",
 "POST /api/sessions\n{\"ti\\u0000tle\": \"abc\"}"]
--- error_code eval
[400, 400, 400, 400, 400]
--- response_body_like eval
[Chathistory::request_id_like(qq{{"error":{"code":"invalid_request","message":"\\"title\\" holds \\\\u0000, which text cannot store","request_id":"__REQUEST_ID__"}}\n}),
 Chathistory::request_id_like(qq{{"error":{"code":"invalid_request","message":"\\"title\\" holds \\\\u0000, which text cannot store","request_id":"__REQUEST_ID__"}}\n}),
 Chathistory::request_id_like(qq{{"error":{"code":"invalid_request","message":"\\"query\\" holds \\\\u0000, which text cannot store","request_id":"__REQUEST_ID__"}}\n}),
 Chathistory::request_id_like(qq{{"error":{"code":"invalid_request","message":"\\"deep\\" holds \\\\u0000, which text cannot store","request_id":"__REQUEST_ID__"}}\n}),
 Chathistory::request_id_like(qq{{"error":{"code":"invalid_request","message":"a string of the body holds \\\\u0000, which text cannot store","request_id":"__REQUEST_ID__"}}\n})]



=== TEST 2: a raw control character inside a string is invalid JSON: 400, naming the member
--- request eval
["POST /api/sessions\n{\"source_lang\": \"en\", \"target_lang\": \"es\", \"title\": \"abc\x01def\"}",
 "PATCH /api/sessions/$::S\n{\"title\": \"two\nlines\"}",
 "POST /api/search\n{\"query\": \"tab\there\"}"]
--- error_code eval
[400, 400, 400]
--- response_body_like eval
[Chathistory::request_id_like(qq{{"error":{"code":"invalid_request","message":"\\"title\\" holds a raw control character, which JSON strings must escape","request_id":"__REQUEST_ID__"}}\n}),
 Chathistory::request_id_like(qq{{"error":{"code":"invalid_request","message":"\\"title\\" holds a raw control character, which JSON strings must escape","request_id":"__REQUEST_ID__"}}\n}),
 Chathistory::request_id_like(qq{{"error":{"code":"invalid_request","message":"\\"query\\" holds a raw control character, which JSON strings must escape","request_id":"__REQUEST_ID__"}}\n})]



=== TEST 3: escaped control characters, escaped quotes and whitespace between members are fine
--- request eval
"PATCH /api/sessions/$::S\n{\n\t\"title\" :\r\n \"kept\"\n}"
--- error_code: 200
--- response_body_like: "title":"kept"



=== TEST 4: escapes that look like a NUL are not one
--- request eval
["POST /api/search\n{\"query\": \"a\\\\u0000b \\\\\\\\u0000 \\\"x\\\"\", \"mode\": \"keyword\"}"]
--- error_code eval
[200]
--- response_body_like eval
[qr/^\{"data":\[/]



=== TEST 5: times PostgreSQL would refuse are 400 saying why
--- request eval
["POST /api/search\n{\"query\": \"a\", \"from\": \"2026-01-01T00:00:00+16:00\"}",
 "POST /api/search\n{\"query\": \"a\", \"to\": \"2026-01-01T00:00:00-23:59\"}",
 "POST /api/search\n{\"query\": \"a\", \"from\": \"0000-01-01T00:00:00Z\"}",
 "POST /api/search\n{\"query\": \"a\", \"to\": \"0000-12-31\"}",
 "POST /api/search\n{\"query\": \"a\", \"from\": \"2026-02-30\"}",
 "POST /api/search\n{\"query\": \"a\", \"to\": 20260101}"]
--- error_code eval
[400, 400, 400, 400, 400, 400]
--- response_body_like eval
[Chathistory::request_id_like(qq{{"error":{"code":"invalid_request","message":"from has a UTC offset beyond 15:59","request_id":"__REQUEST_ID__"}}\n}),
 Chathistory::request_id_like(qq{{"error":{"code":"invalid_request","message":"to has a UTC offset beyond 15:59","request_id":"__REQUEST_ID__"}}\n}),
 Chathistory::request_id_like(qq{{"error":{"code":"invalid_request","message":"from has the year 0000, and years start at 0001","request_id":"__REQUEST_ID__"}}\n}),
 Chathistory::request_id_like(qq{{"error":{"code":"invalid_request","message":"to has the year 0000, and years start at 0001","request_id":"__REQUEST_ID__"}}\n}),
 Chathistory::request_id_like(qq{{"error":{"code":"invalid_request","message":"from is not an RFC 3339 time such as \\"2026-01-31T12:00:00Z\\"","request_id":"__REQUEST_ID__"}}\n}),
 Chathistory::request_id_like(qq{{"error":{"code":"invalid_request","message":"to is not a string","request_id":"__REQUEST_ID__"}}\n})]



=== TEST 6: the edges PostgreSQL takes are taken
--- request eval
["POST /api/search\n{\"query\": \"a\", \"mode\": \"keyword\", \"from\": \"0001-01-01T00:00:00+15:59\", \"to\": \"9999-12-31T23:59:59-15:59\"}"]
--- error_code eval
[200]
--- response_body_like eval
[qr/^\{"data":\[/]



=== TEST 7: a transcript with \u0000 from the upstream is passed on and not recorded cut short
--- http_config eval
"chathistory_database_url \"$ENV{TEST_NGINX_DATABASE_URL}\";\n"
. "chathistory_spool_path " . File::Temp::tempdir(CLEANUP => 1) . ";\n"
--- config
    location = /upstream {
        default_type application/json;
        return 200 '{"transcript":"abc\\u0000def","translation":"x"}';
    }
    location = /pipeline {
        chathistory_capture on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream;
    }
--- request eval
"POST /pipeline?session_id=$::S"
--- error_code: 200
--- response_body chomp
{"transcript":"abc\u0000def","translation":"x"}
--- error_log
not recorded: the upstream's answer has malformed JSON
--- no_error_log
[error]
[crit]
[alert]



=== TEST 8: a body over chathistory_capture_audio_max_size is recorded without its audio, unread
--- http_config eval
"chathistory_database_url \"$ENV{TEST_NGINX_DATABASE_URL}\";\n"
. "chathistory_spool_path " . File::Temp::tempdir(CLEANUP => 1) . ";\n"
. "chathistory_audio_storage_path $::Audio;\n"
--- config
    location = /upstream {
        default_type application/json;
        return 200 '{"transcript":"big","translation":"grande"}';
    }
    location = /pipeline {
        chathistory_capture on;
        chathistory_capture_audio_max_size 1k;
        client_body_buffer_size 512;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream;
    }
--- raw_request eval
main::wav_post("/pipeline?session_id=$::SAUDIO")
--- error_code: 200
--- error_log
recorded without audio: its body is larger than chathistory_capture_audio_max_size
--- no_error_log
[error]
[crit]
[alert]
