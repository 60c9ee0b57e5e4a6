# A session's messages: conversation order, reversed, paginated.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use MIME::Base64 qw(encode_base64url);
use Chathistory;

no_shuffle();
no_long_string();
add_block_preprocessor(\&chathistory_block);

my $S = '0190a000-0000-7000-8000-0000000000e1';   # five messages
my $E = '0190a000-0000-7000-8000-0000000000e2';   # none
my $M = '0190a000-0000-7000-8000-00000000e1';     # message ids: $M . 01..05

sql(<<"SQL");
DELETE FROM jobs WHERE payload->>'message_id' LIKE '$M%';
DELETE FROM sessions WHERE id IN ('$S', '$E');
INSERT INTO sessions (id, org_id, source_lang, target_lang)
    SELECT s, id, 'en', 'es' FROM organizations, unnest(ARRAY['$S', '$E']::uuid[]) s
    WHERE name = 'default';
INSERT INTO messages (id, session_id, org_id, created_at, source_lang, target_lang,
                      source_text, translated_text, stt_ms, translate_ms, tts_ms,
                      model_used)
    SELECT ('$M' || lpad(n::text, 2, '0'))::uuid, s.id, s.org_id,
           '2026-02-01T10:00:00Z'::timestamptz + n * interval '1 second', 'en', 'es',
           'hello ' || n, 'hola ' || n, 100 + n, 20, 300, 'pipeline-1'
    FROM generate_series(1, 5) n, sessions s WHERE s.id = '$S';
UPDATE messages SET audio_path = '$S/${M}02.opus', audio_ms = 1500 WHERE id = '${M}02';
UPDATE messages SET embedding = array_fill(0.1, ARRAY[768])::vector,
                    embedding_model = 'hash-v1' WHERE id = '${M}03';
INSERT INTO jobs (kind, payload, status, attempts, last_error)
    VALUES ('embed_message', jsonb_build_object('message_id', '${M}04'), 'failed', 5, 'boom');
SQL

our $after2 = encode_base64url("v1." . sql("SELECT (extract(epoch FROM created_at)"
    . " * 1000000)::bigint FROM messages WHERE id = '${M}02'") . ".${M}02");

run_tests();

__DATA__

=== TEST 1: messages come in conversation order with every field
--- request
GET /api/sessions/0190a000-0000-7000-8000-0000000000e1/messages
--- error_code: 200
--- response_body_like eval
qr/^\{"data":\[\{"id":"0190a000-0000-7000-8000-00000000e101","session_id":"0190a000-0000-7000-8000-0000000000e1","created_at":"2026-02-01T10:00:01.000Z","source_lang":"en","target_lang":"es","source_text":"hello 1","translated_text":"hola 1","stt_ms":101,"translate_ms":20,"tts_ms":300,"model_used":"pipeline-1","has_audio":false,"audio_url":null,"embedding_status":"pending"\},\{"id":"0190a000-0000-7000-8000-00000000e102",[^{}]*"has_audio":true,"audio_url":"\/api\/sessions\/0190a000-0000-7000-8000-0000000000e1\/messages\/0190a000-0000-7000-8000-00000000e102\/audio","embedding_status":"pending"\},\{"id":"0190a000-0000-7000-8000-00000000e103",[^{}]*"embedding_status":"ready"\},\{"id":"0190a000-0000-7000-8000-00000000e104",[^{}]*"embedding_status":"failed"\},\{"id":"0190a000-0000-7000-8000-00000000e105",[^{}]*\}\],"next_cursor":null\}$/



=== TEST 2: order=desc reverses them
--- request
GET /api/sessions/0190a000-0000-7000-8000-0000000000e1/messages?order=desc
--- error_code: 200
--- response_body_like: ^\{"data":\[\{"id":"0190a000-0000-7000-8000-00000000e105",.*"id":"0190a000-0000-7000-8000-00000000e101",[^{}]*\}\],"next_cursor":null\}$



=== TEST 3: a page of two has a cursor to the rest
--- request
GET /api/sessions/0190a000-0000-7000-8000-0000000000e1/messages?limit=2
--- error_code: 200
--- response_body_like eval
qr/^\{"data":\[\{"id":"0190a000-0000-7000-8000-00000000e101",[^{}]*\},\{"id":"0190a000-0000-7000-8000-00000000e102",[^{}]*\}\],"next_cursor":"$::after2"\}$/



=== TEST 4: the cursor continues after the second
--- request eval
"GET /api/sessions/0190a000-0000-7000-8000-0000000000e1/messages?limit=2&cursor=$::after2"
--- error_code: 200
--- response_body_like: ^\{"data":\[\{"id":"0190a000-0000-7000-8000-00000000e103",[^{}]*\},\{"id":"0190a000-0000-7000-8000-00000000e104",[^{}]*\}\],"next_cursor":"[^"]+"\}$



=== TEST 5: the same cursor read backwards gives what came before
--- request eval
"GET /api/sessions/0190a000-0000-7000-8000-0000000000e1/messages?order=desc&cursor=$::after2"
--- error_code: 200
--- response_body_like: ^\{"data":\[\{"id":"0190a000-0000-7000-8000-00000000e101",[^{}]*\}\],"next_cursor":null\}$



=== TEST 6: a session without messages has an empty list
--- request
GET /api/sessions/0190a000-0000-7000-8000-0000000000e2/messages
--- error_code: 200
--- response_body
{"data":[],"next_cursor":null}



=== TEST 7: an unknown session is 404
--- request
GET /api/sessions/0190a000-0000-7000-8000-00000000dead/messages
--- error_code: 404
--- response_body_like eval
Chathistory::error_like(q{not_found}, q{no such session})



=== TEST 8: bad arguments are 400
--- request eval
[
"GET /api/sessions/0190a000-0000-7000-8000-0000000000e1/messages?order=up",
"GET /api/sessions/0190a000-0000-7000-8000-0000000000e1/messages?limit=500",
"GET /api/sessions/0190a000-0000-7000-8000-0000000000e1/messages?cursor=xyz",
"GET /api/sessions/nope/messages",
]
--- error_code eval
[400, 400, 400, 400]
--- response_body_like eval
[
Chathistory::error_like(q{invalid_request}, q{order must be asc or desc}),
Chathistory::error_like(q{invalid_request}, q{limit must be an integer from 1 to 100}),
Chathistory::error_like(q{invalid_request}, q{the cursor is not valid}),
Chathistory::error_like(q{invalid_request}, q{the id in the path is not a UUID}),
]



=== TEST 9: messages are read-only here
--- request
POST /api/sessions/0190a000-0000-7000-8000-0000000000e1/messages
{}
--- error_code: 405
--- response_headers
Allow: GET, HEAD
