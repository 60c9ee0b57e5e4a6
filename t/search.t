# Search: semantic (the worker's hash embeddings, the HNSW index), keyword
# (full text), hybrid, every filter, and bad input.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use Chathistory;

no_shuffle();
no_long_string();
add_block_preprocessor(\&chathistory_block);

my $A = '0190a000-0000-7000-8000-0000000005a1';   # default org, en -> es
my $B = '0190a000-0000-7000-8000-0000000005b1';   # org "search-b", pt -> en
my $ORGB = '0190a000-0000-7000-8000-0000000005bb';
my $M = '0190a000-0000-7000-8000-0000000005';     # messages $M . 01..

sql(<<"SQL");
DELETE FROM jobs WHERE payload->>'message_id' LIKE '$M%';
DELETE FROM sessions WHERE id IN ('$A', '$B');
DELETE FROM organizations WHERE id = '$ORGB';
INSERT INTO organizations (id, name) VALUES ('$ORGB', 'search-b');
INSERT INTO sessions (id, org_id, source_lang, target_lang)
    SELECT '$A', id, 'en', 'es' FROM organizations WHERE name = 'default';
INSERT INTO sessions (id, org_id, source_lang, target_lang)
    VALUES ('$B', '$ORGB', 'pt', 'en');
INSERT INTO messages (id, session_id, org_id, created_at, source_lang, target_lang,
                      source_text, translated_text)
SELECT ('$M' || n)::uuid, s.id, s.org_id, '2026-03-01T10:00:00Z'::timestamptz + (n::int) * interval '1 hour',
       s.source_lang, s.target_lang, t.src, t.dst
FROM (VALUES
    ('01', '$A', 'The train to Lisbon leaves at nine', 'El tren a Lisboa sale a las nueve'),
    ('02', '$A', 'I would like a coffee with milk', 'Quisiera un café con leche'),
    ('03', '$A', 'Where is the nearest pharmacy', 'Dónde está la farmacia más cercana'),
    ('04', '$A', 'My flight number is LH 4521', 'Mi número de vuelo es LH 4521'),
    ('05', '$A', 'The trains are running late', 'Los trenes llegan tarde'),
    ('06', '$B', 'O comboio para Lisboa parte às nove', 'The train to Lisbon leaves at nine')
) AS t(n, sid, src, dst) JOIN sessions s ON s.id = t.sid::uuid;
INSERT INTO jobs (kind, payload)
    SELECT 'embed_message', jsonb_build_object('message_id', id)
    FROM messages WHERE id::text LIKE '$M%';
SQL

# the worker embeds them, as it does in production
system($ENV{CHATHISTORY_WORKER} // 'build/chathistory-worker', 'run', '--drain',
       '--database-url', $ENV{TEST_NGINX_DATABASE_URL}) == 0
    or die "the worker failed to embed the corpus\n";
is(sql("SELECT count(*) FROM messages WHERE id::text LIKE '$M%'"
       . " AND embedding IS NOT NULL AND embedding_model = 'hash-v1'"), 6,
   "the worker embedded the corpus");

# a message embedded by another model is never compared
sql("INSERT INTO messages (id, session_id, org_id, source_lang, target_lang, source_text,"
    . " translated_text, embedding, embedding_model)"
    . " SELECT '${M}07', id, org_id, 'en', 'es', 'train to Lisbon', 'tren a Lisboa',"
    . " array_fill(0.036, ARRAY[768])::vector, 'other-model' FROM sessions WHERE id = '$A'");

run_tests();

__DATA__

=== TEST 1: semantic search puts the closest message first, with its session and score
--- request
POST /api/search
{"query": "train to Lisbon at nine", "limit": 3}
--- error_code: 200
--- response_body_like eval
qr/^\{"data":\[\{"message":\{"id":"0190a000-0000-7000-8000-000000000501",.*"session":\{"id":"0190a000-0000-7000-8000-0000000005a1",.*"score":0\.\d+\},\{"message":\{"id":"0190a000-0000-7000-8000-000000000506",.*\}\]\}$/



=== TEST 2: the model of other embeddings is not compared
--- request
POST /api/search
{"query": "train to Lisbon", "limit": 100}
--- error_code: 200
--- response_body_unlike: 0190a000-0000-7000-8000-000000000507



=== TEST 3: keyword search finds numbers
--- request
POST /api/search
{"query": "4521", "mode": "keyword"}
--- error_code: 200
--- response_body_like: ^\{"data":\[\{"message":\{"id":"0190a000-0000-7000-8000-000000000504",[^\]]*\]\}$



=== TEST 4: keyword search stems in the message's language
--- request
POST /api/search
{"query": "train", "mode": "keyword", "source_lang": "en"}
--- error_code: 200
--- response_body_like: "id":"0190a000-0000-7000-8000-000000000501".*"id":"0190a000-0000-7000-8000-000000000505"



=== TEST 5: hybrid search fuses both rankings
--- request
POST /api/search
{"query": "coffee with milk", "mode": "hybrid", "limit": 2, "org_id": null, "session_id": "0190a000-0000-7000-8000-0000000005a1"}
--- error_code: 200
--- response_body_like: ^\{"data":\[\{"message":\{"id":"0190a000-0000-7000-8000-000000000502",.*"score":1(\.0+)?\},



=== TEST 6: filters: session, organization, languages, time
--- request eval
[
"POST /api/search\n{\"query\": \"train to Lisbon\", \"session_id\": \"0190a000-0000-7000-8000-0000000005b1\"}",
"POST /api/search\n{\"query\": \"train to Lisbon\", \"org_id\": \"0190a000-0000-7000-8000-0000000005bb\"}",
"POST /api/search\n{\"query\": \"train to Lisbon\", \"source_lang\": \"PT\"}",
"POST /api/search\n{\"query\": \"train to Lisbon\", \"target_lang\": \"en\", \"mode\": \"hybrid\"}",
"POST /api/search\n{\"query\": \"train\", \"from\": \"2026-03-01T14:30:00Z\", \"to\": \"2026-03-01T15:30:00+00:00\"}",
"POST /api/search\n{\"query\": \"train\", \"session_id\": \"0190a000-0000-7000-8000-0000000005a1\", \"from\": \"2026-03-02\"}",
]
--- error_code eval
[200, 200, 200, 200, 200, 200]
--- response_body_like eval
[
qr/^\{"data":\[\{"message":\{"id":"0190a000-0000-7000-8000-000000000506",[^\]]*\]\}$/,
qr/^\{"data":\[\{"message":\{"id":"0190a000-0000-7000-8000-000000000506",[^\]]*\]\}$/,
qr/^\{"data":\[\{"message":\{"id":"0190a000-0000-7000-8000-000000000506",[^\]]*\]\}$/,
qr/^\{"data":\[\{"message":\{"id":"0190a000-0000-7000-8000-000000000506",[^\]]*\]\}$/,
qr/^\{"data":\[\{"message":\{"id":"0190a000-0000-7000-8000-000000000505",[^\]]*\]\}$/,
qr/^\{"data":\[\]\}$/,
]



=== TEST 7: bad input is 400
--- request eval
[
"POST /api/search\n{}",
"POST /api/search\n{\"query\": \"   \"}",
"POST /api/search\n{\"query\": \"" . ("x" x 2001) . "\"}",
"POST /api/search\n{\"query\": \"a\", \"from\": \"yesterday\"}",
"POST /api/search\n{\"query\": \"a\", \"to\": \"2026-02-30T00:00:00Z\"}",
"POST /api/search\n{\"query\": \"a\", \"from\": \"2026-03-02\", \"to\": \"2026-03-01\"}",
"POST /api/search\n{\"query\": \"a\", \"source_lang\": \"english!\"}",
"POST /api/search\n{\"query\": \"a\", \"limit\": 0}",
"POST /api/search\n{\"query\": \"a\", \"limit\": 101}",
"POST /api/search\n{\"query\": \"a\", \"limit\": 2.5}",
"POST /api/search\n{\"query\": \"a\", \"mode\": \"fuzzy\"}",
"POST /api/search\n{\"query\": \"a\", \"session_id\": \"s1\"}",
"POST /api/search\n{\"query\": \"a\", \"colour\": \"red\"}",
"POST /api/search\n{\"query\": \"a\", \"limit\": 1e300}",
"POST /api/search\n{\"query\": \"a\", \"limit\": -1e20}",
"POST /api/search\n{\"query\": \"4\xcb\xce1\", \"mode\": \"keyword\"}",
]
--- error_code eval
[400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400,
 400]
--- response_body_like eval
[
qr/query is required/, qr/query must be a text/, qr/query must be a text/,
qr/RFC 3339/, qr/RFC 3339/, qr/from is after to/, qr/BCP 47/,
qr/limit must be/, qr/limit must be/, qr/limit must be/, qr/mode must be/,
qr/session_id must be a UUID/, qr/unknown field/,
qr/limit must be/, qr/limit must be/, qr/query must be a text/,
]



=== TEST 8: search takes POST only
--- request
GET /api/search?query=x
--- error_code: 405
--- response_headers
Allow: POST



=== TEST 9: an embedding server's provider needs its model and location (t/search_embedding.t)
--- config
    location /api/ {
        chathistory_api;
        chathistory_embedding_provider ollama;
    }
--- request
GET /api/search
--- must_die
--- error_log
chathistory_embedding_provider "ollama" requires chathistory_embedding_model



=== TEST 10: retention settings of the default organization
--- request eval
[
"GET /api/settings/retention",
"PUT /api/settings/retention\n{\"retention_days\": 30}",
"GET /api/settings/retention",
"PUT /api/settings/retention\n{\"retention_days\": null}",
]
--- error_code eval
[200, 200, 200, 200]
--- response_body_like eval
[
qr/^\{"org_id":"[0-9a-f-]{36}","retention_days":(null|\d+)\}$/,
qr/^\{"org_id":"[0-9a-f-]{36}","retention_days":30,"sessions_updated":0\}$/,
qr/^\{"org_id":"[0-9a-f-]{36}","retention_days":30\}$/,
qr/^\{"org_id":"[0-9a-f-]{36}","retention_days":null,"sessions_updated":0\}$/,
]



=== TEST 11: apply_to_existing recomputes the sessions' expiry
--- request eval
[
"PUT /api/settings/retention\n{\"org_id\": \"0190a000-0000-7000-8000-0000000005bb\", \"retention_days\": 7, \"apply_to_existing\": true}",
"GET /api/sessions/0190a000-0000-7000-8000-0000000005b1",
"GET /api/settings/retention?org_id=0190a000-0000-7000-8000-0000000005bb",
]
--- error_code eval
[200, 200, 200]
--- response_body_like eval
[
qr/^\{"org_id":"0190a000-0000-7000-8000-0000000005bb","retention_days":7,"sessions_updated":1\}$/,
qr/"expires_at":"\d{4}-/,
qr/"retention_days":7/,
]



=== TEST 12: bad retention settings are 400, unknown organizations 404
--- request eval
[
"PUT /api/settings/retention\n{\"retention_days\": 0}",
"PUT /api/settings/retention\n{\"retention_days\": 3651}",
"PUT /api/settings/retention\n{\"retention_days\": \"30\"}",
"PUT /api/settings/retention\n{}",
"PUT /api/settings/retention\n{\"retention_days\": 5, \"apply_to_existing\": 1}",
"PUT /api/settings/retention\n{\"retention_days\": 5, \"colour\": 1}",
"GET /api/settings/retention?org_id=nope",
"GET /api/settings/retention?org_id=0190a000-0000-7000-8000-00000000dead",
"POST /api/settings/retention\n{}",
]
--- error_code eval
[400, 400, 400, 400, 400, 400, 400, 404, 405]
