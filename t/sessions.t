# Sessions API: create, read, list, change, delete, and every way to get
# them wrong.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use Chathistory;

no_shuffle();
no_long_string();
add_block_preprocessor(\&chathistory_block);

my $S = '0190a000-0000-7000-8000-0000000000';   # fixture session ids
my $ORG30 = '0190a000-0000-7000-8000-000000000030';
my $ORGL = '0190a000-0000-7000-8000-0000000000aa';

sql(<<"SQL");
DELETE FROM sessions WHERE id::text LIKE '0190a000-%' OR org_id IN ('$ORG30', '$ORGL');
DELETE FROM organizations WHERE id IN ('$ORG30', '$ORGL');
DELETE FROM jobs WHERE payload->>'session_id' LIKE '0190a000-%';
INSERT INTO organizations (id, name, retention_days) VALUES
    ('$ORG30', 'test-retention-30', 30), ('$ORGL', 'test-list', NULL);
INSERT INTO sessions (id, org_id, title, source_lang, target_lang)
    SELECT ('${S}0' || n)::uuid, o.id, 'fixture ' || n, 'en', 'es'
    FROM generate_series(1, 3) n, organizations o WHERE o.name = 'default';
INSERT INTO messages (id, session_id, org_id, source_lang, target_lang,
                      source_text, translated_text)
    SELECT ('${S}' || (10 + n))::uuid, s.id, s.org_id, 'en', 'es', 'hello', 'hola'
    FROM generate_series(1, 2) n, sessions s WHERE s.id = '${S}01';
INSERT INTO messages (id, session_id, org_id, source_lang, target_lang,
                      source_text, translated_text)
    SELECT '${S}21', s.id, s.org_id, 'en', 'es', 'bye', 'adios'
    FROM sessions s WHERE s.id = '${S}03';
INSERT INTO sessions (id, org_id, source_lang, target_lang, created_at)
    SELECT ('0190a000-0000-7000-8000-000000000b' || lpad(n::text, 2, '0'))::uuid,
           '$ORGL', 'fr', 'de', '2026-01-01T00:00:00Z'::timestamptz + n * interval '1 minute'
    FROM generate_series(1, 25) n;
SQL

$ENV{TEST_NGINX_S} = $S;
$ENV{TEST_NGINX_DEFAULT_ORG} = sql("SELECT id FROM organizations WHERE name = 'default'");

# the cursor after the sixth-oldest list fixture, as the API must make it
is(session_cursor('0190a000-0000-7000-8000-000000000b06'),
   'djEuMTc2NzIyNTk2MDAwMDAwMC4wMTkwYTAwMC0wMDAwLTcwMDAtODAwMC0wMDAwMDAwMDBiMDY',
   "fixture cursor");

run_tests();

# What HTTP cannot show: the deleted session took its messages along and
# left a job to remove its audio files.
is(sql("SELECT count(*) FROM messages WHERE session_id = '${S}03'"), 0,
   "deleting a session deleted its messages");
is(sql("SELECT count(*) FROM jobs WHERE kind = 'delete_audio'"
       . " AND payload->>'session_id' = '${S}03'"), 1,
   "deleting a session queued the deletion of its audio");

__DATA__

=== TEST 1: a session is created with the defaults
--- request
POST /api/sessions
{"source_lang": "en", "target_lang": "es"}
--- more_headers
Content-Type: application/json
--- error_code: 201
--- response_headers
Content-Type: application/json
--- response_body_like eval
qr/^\{"id":"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}","org_id":"$ENV{TEST_NGINX_DEFAULT_ORG}","title":null,"source_lang":"en","target_lang":"es","audio_enabled":false,"user_id":null,"metadata":null,"created_at":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z","updated_at":"[^"]+","expires_at":null,"message_count":0\}$/



=== TEST 2: every field, and language tags come back in their usual case
--- request
POST /api/sessions
{"source_lang": "PT-br", "target_lang": "zh-hant-tw", "audio_enabled": true, "title": "Überfahrt \"1\"", "org_id": null}
--- error_code: 201
--- response_body_like: "title":"Überfahrt \\"1\\"","source_lang":"pt-BR","target_lang":"zh-Hant-TW","audio_enabled":true,



=== TEST 3: the organization's retention sets expires_at
--- request
POST /api/sessions
{"source_lang": "en", "target_lang": "de", "org_id": "0190a000-0000-7000-8000-000000000030"}
--- error_code: 201
--- response_body_like: "org_id":"0190a000-0000-7000-8000-000000000030",.*"expires_at":"\d{4}-



=== TEST 4: an unknown organization is 404
--- request
POST /api/sessions
{"source_lang": "en", "target_lang": "de", "org_id": "0190a000-0000-7000-8000-00000000dead"}
--- error_code: 404
--- response_body_like eval
Chathistory::error_like(q{not_found}, q{no such organization})



=== TEST 5: malformed JSON is 400
--- request
POST /api/sessions
{"source_lang": "en", "target_lang":
--- error_code: 400
--- response_body_like eval
Chathistory::error_like(q{invalid_request}, q{the body must be a JSON object})



=== TEST 6: JSON that is not an object is 400
--- request
POST /api/sessions
["en", "es"]
--- error_code: 400
--- response_body_like: "code":"invalid_request"



=== TEST 7: trailing garbage after the object is 400
--- request
POST /api/sessions
{"source_lang": "en", "target_lang": "es"} x
--- error_code: 400
--- response_body_like: "code":"invalid_request"



=== TEST 8: an empty body is 400
--- request
POST /api/sessions
--- error_code: 400
--- response_body_like: "code":"invalid_request"



=== TEST 9: source_lang is required
--- request
POST /api/sessions
{"target_lang": "es"}
--- error_code: 400
--- response_body_like eval
Chathistory::error_like(q{invalid_request}, q{source_lang is required})



=== TEST 10: target_lang is required
--- request
POST /api/sessions
{"source_lang": "es", "target_lang": null}
--- error_code: 400
--- response_body_like eval
Chathistory::error_like(q{invalid_request}, q{target_lang is required})



=== TEST 11: a language that is not a BCP 47 tag is 400
--- request
POST /api/sessions
{"source_lang": "english!", "target_lang": "es"}
--- error_code: 400
--- response_body_like eval
Chathistory::error_like(q{invalid_request}, q{source_lang must be a BCP 47 language tag such as \"en\" or \"pt-BR\"})



=== TEST 12: tags with bad subtags are 400
--- request eval
[
"POST /api/sessions\n{\"source_lang\": \"e\", \"target_lang\": \"es\"}",
"POST /api/sessions\n{\"source_lang\": \"en-\", \"target_lang\": \"es\"}",
"POST /api/sessions\n{\"source_lang\": \"en--US\", \"target_lang\": \"es\"}",
"POST /api/sessions\n{\"source_lang\": \"en-x\", \"target_lang\": \"es\"}",
"POST /api/sessions\n{\"source_lang\": \"en-abcdefghi\", \"target_lang\": \"es\"}",
"POST /api/sessions\n{\"source_lang\": \"abcd\", \"target_lang\": \"es\"}",
"POST /api/sessions\n{\"source_lang\": 7, \"target_lang\": \"es\"}",
]
--- error_code eval
[400, 400, 400, 400, 400, 400, 400]



=== TEST 13: audio_enabled must be a boolean
--- request
POST /api/sessions
{"source_lang": "en", "target_lang": "es", "audio_enabled": "yes"}
--- error_code: 400
--- response_body_like eval
Chathistory::error_like(q{invalid_request}, q{audio_enabled must be true or false})



=== TEST 14: a title must be a short string
--- request eval
[
"POST /api/sessions\n{\"source_lang\": \"en\", \"target_lang\": \"es\", \"title\": 5}",
"POST /api/sessions\n{\"source_lang\": \"en\", \"target_lang\": \"es\", \"title\": \"" . ("x" x 501) . "\"}",
"POST /api/sessions\n{\"source_lang\": \"en\", \"target_lang\": \"es\", \"title\": \"\\udc00\"}",
"POST /api/sessions\n{\"source_lang\": \"en\", \"target_lang\": \"es\", \"title\": \"\xed\xa0\x80\"}",
"POST /api/sessions\n{\"source_lang\": \"en\", \"target_lang\": \"es\", \"title\": \"a\xcb\xceb\"}",
]
--- error_code eval
[400, 400, 400, 400, 400]
--- response_body_like eval
[qr/title must be/, qr/title must be/, qr/invalid_request/, qr/title must be/,
 qr/title must be/]



=== TEST 15: an unknown field is 400
--- request
POST /api/sessions
{"source_lang": "en", "target_lang": "es", "colour": "red"}
--- error_code: 400
--- response_body_like eval
Chathistory::error_like(q{invalid_request}, q{the body has an unknown field})



=== TEST 16: a malformed org_id is 400
--- request
POST /api/sessions
{"source_lang": "en", "target_lang": "es", "org_id": "default"}
--- error_code: 400
--- response_body_like eval
Chathistory::error_like(q{invalid_request}, q{org_id must be a UUID})



=== TEST 17: a body over the limit is 413
--- request eval
"POST /api/sessions\n{\"source_lang\": \"en\", \"target_lang\": \"es\", \"title\": \"" . ("x" x 17000) . "\"}"
--- error_code: 413
--- response_body_like eval
Chathistory::error_like(q{payload_too_large}, q{the body is too large})



=== TEST 18: the limit is a directive
--- config
    location /api/ {
        chathistory_api;
        chathistory_api_max_body_size 64;
    }
--- request
POST /api/sessions
{"source_lang": "en", "target_lang": "es", "title": "just over sixty-four bytes"}
--- error_code: 413
--- response_body_like: "payload_too_large"



=== TEST 19: a body that is not JSON is 415
--- request
POST /api/sessions
source_lang=en&target_lang=es
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 415
--- response_body_like eval
Chathistory::error_like(q{unsupported_media_type}, q{the body must be application/json})



=== TEST 20: JSON with a charset is JSON
--- request
POST /api/sessions
{"source_lang": "en", "target_lang": "es"}
--- more_headers
Content-Type: application/json; charset=utf-8
--- error_code: 201
--- response_body_like: "source_lang":"en"



=== TEST 21: a session is read with its message count
--- request
GET /api/sessions/0190a000-0000-7000-8000-000000000001
--- error_code: 200
--- response_body_like: ^\{"id":"0190a000-0000-7000-8000-000000000001",.*"title":"fixture 1",.*"message_count":2\}$



=== TEST 22: ids are accepted in upper case
--- request
GET /api/sessions/0190A000-0000-7000-8000-000000000001
--- error_code: 200
--- response_body_like: "id":"0190a000-0000-7000-8000-000000000001"



=== TEST 23: HEAD answers without a body
--- request
HEAD /api/sessions/0190a000-0000-7000-8000-000000000001
--- error_code: 200
--- response_body



=== TEST 24: an unknown session is 404
--- request
GET /api/sessions/0190a000-0000-7000-8000-00000000dead
--- error_code: 404
--- response_body_like eval
Chathistory::error_like(q{not_found}, q{no such session})



=== TEST 25: a malformed id is 400
--- request eval
["GET /api/sessions/42", "GET /api/sessions/0190a000-0000-7000-8000-00000000000g", "DELETE /api/sessions/0190a000x0000-7000-8000-000000000001", "PATCH /api/sessions/%27%20OR%201=1\n{}"]
--- error_code eval
[400, 400, 400, 400]
--- response_body_like eval
[(Chathistory::error_like(q{invalid_request}, q{the id in the path is not a UUID})) x 4]



=== TEST 26: the title is changed
--- request
PATCH /api/sessions/0190a000-0000-7000-8000-000000000002
{"title": "renamed"}
--- error_code: 200
--- response_body_like: "title":"renamed",.*"audio_enabled":false,



=== TEST 27: audio_enabled is changed and the title kept
--- request
PATCH /api/sessions/0190a000-0000-7000-8000-000000000002
{"audio_enabled": true}
--- error_code: 200
--- response_body_like: "title":"renamed",.*"audio_enabled":true,



=== TEST 28: the title is cleared with null
--- request
PATCH /api/sessions/0190a000-0000-7000-8000-000000000002
{"title": null, "audio_enabled": false}
--- error_code: 200
--- response_body_like: "title":null,.*"audio_enabled":false,



=== TEST 29: other fields cannot be changed
--- request
PATCH /api/sessions/0190a000-0000-7000-8000-000000000002
{"source_lang": "fr"}
--- error_code: 400
--- response_body_like eval
Chathistory::error_like(q{invalid_request}, q{only title, audio_enabled, user_id and metadata can be changed})



=== TEST 30: an empty change is 400
--- request
PATCH /api/sessions/0190a000-0000-7000-8000-000000000002
{}
--- error_code: 400
--- response_body_like eval
Chathistory::error_like(q{invalid_request}, q{give title, audio_enabled, user_id or metadata to change})



=== TEST 31: a change of the wrong type is 400
--- request eval
["PATCH /api/sessions/$ENV{TEST_NGINX_S}02\n{\"audio_enabled\": 1}", "PATCH /api/sessions/$ENV{TEST_NGINX_S}02\n{\"title\": [\"a\"]}"]
--- error_code eval
[400, 400]



=== TEST 32: changing an unknown session is 404
--- request
PATCH /api/sessions/0190a000-0000-7000-8000-00000000dead
{"title": "x"}
--- error_code: 404
--- response_body_like: "not_found"



=== TEST 33: a session is deleted, then gone
--- request eval
["DELETE /api/sessions/$ENV{TEST_NGINX_S}03", "GET /api/sessions/$ENV{TEST_NGINX_S}03", "DELETE /api/sessions/$ENV{TEST_NGINX_S}03"]
--- error_code eval
[204, 404, 404]
--- response_body_like eval
["", Chathistory::error_like(q{not_found}, q{no such session}), Chathistory::error_like(q{not_found}, q{no such session})]



=== TEST 34: a method a resource does not have is 405 with Allow
--- request
PUT /api/sessions
{}
--- error_code: 405
--- response_headers
Allow: GET, HEAD, POST
--- response_body_like eval
Chathistory::error_like(q{method_not_allowed}, q{this method is not allowed on the resource})



=== TEST 35: POST on a session is 405 with its methods
--- request
POST /api/sessions/0190a000-0000-7000-8000-000000000001
{}
--- error_code: 405
--- response_headers
Allow: GET, HEAD, PATCH, DELETE



=== TEST 36: an unknown resource is a JSON 404
--- request
GET /api/nothing/here
--- error_code: 404
--- response_body_like eval
Chathistory::error_like(q{not_found}, q{no such resource})



=== TEST 37: a list is newest first, 20 to a page, with a cursor
--- request
GET /api/sessions?org_id=0190a000-0000-7000-8000-0000000000aa
--- error_code: 200
--- response_body_like: ^\{"data":\[\{"id":"0190a000-0000-7000-8000-000000000b25",(?:[^{}]+\},\{){19}[^{}]*"id":"0190a000-0000-7000-8000-000000000b06".*\}\],"next_cursor":"djEuMTc2NzIyNTk2MDAwMDAwMC4wMTkwYTAwMC0wMDAwLTcwMDAtODAwMC0wMDAwMDAwMDBiMDY"\}$



=== TEST 38: the cursor gives the rest, and the last page has none
--- request
GET /api/sessions?org_id=0190a000-0000-7000-8000-0000000000aa&cursor=djEuMTc2NzIyNTk2MDAwMDAwMC4wMTkwYTAwMC0wMDAwLTcwMDAtODAwMC0wMDAwMDAwMDBiMDY
--- error_code: 200
--- response_body_like: ^\{"data":\[\{"id":"0190a000-0000-7000-8000-000000000b05",(?:[^{}]+\},\{){4}[^{}]*"id":"0190a000-0000-7000-8000-000000000b01"[^{}]*\}\],"next_cursor":null\}$



=== TEST 39: limit sets the page size
--- request
GET /api/sessions?limit=2&org_id=0190a000-0000-7000-8000-0000000000aa
--- error_code: 200
--- response_body_like: ^\{"data":\[\{"id":"0190a000-0000-7000-8000-000000000b25",[^{}]*\},\{"id":"0190a000-0000-7000-8000-000000000b24",[^{}]*\}\],"next_cursor":"[A-Za-z0-9_-]+"\}$



=== TEST 40: a list without a filter spans organizations
--- request
GET /api/sessions?limit=100
--- error_code: 200
--- response_body_like: "org_id":"(?!0190a000-0000-7000-8000-0000000000aa)[^"]+".*"org_id":"0190a000-0000-7000-8000-0000000000aa"



=== TEST 41: a bad limit is 400
--- request eval
["GET /api/sessions?limit=0", "GET /api/sessions?limit=101", "GET /api/sessions?limit=ten", "GET /api/sessions?limit=-1", "GET /api/sessions?limit="]
--- error_code eval
[400, 400, 400, 400, 400]
--- response_body_like eval
[(Chathistory::error_like(q{invalid_request}, q{limit must be an integer from 1 to 100})) x 5]



=== TEST 42: a bad cursor is 400
--- request eval
["GET /api/sessions?cursor=bm9wZQ", "GET /api/sessions?cursor=!!!", "GET /api/sessions?cursor=djEuMTIzLm5vdC1hLXV1aWQ"]
--- error_code eval
[400, 400, 400]
--- response_body_like eval
[(Chathistory::error_like(q{invalid_request}, q{the cursor is not valid})) x 3]



=== TEST 43: a bad org_id filter is 400
--- request
GET /api/sessions?org_id=nope
--- error_code: 400
--- response_body_like eval
Chathistory::error_like(q{invalid_request}, q{org_id must be a UUID})



=== TEST 44: a list of an organization without sessions is empty
--- request
GET /api/sessions?org_id=0190a000-0000-7000-8000-000000000030&limit=1&cursor=djEuMC4wMTkwYTAwMC0wMDAwLTcwMDAtODAwMC0wMDAwMDAwMDAwMDE
--- error_code: 200
--- response_body
{"data":[],"next_cursor":null}
