# Sessions' end user (user_id) and metadata: set on create, changed and
# cleared by PATCH, validated, filtered on by the list and by search (all
# three modes), on /api and on the /v1 gateway within the key's
# organization.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use Chathistory;

no_shuffle();
no_long_string();
add_block_preprocessor(\&chathistory_block);

my $db = $ENV{TEST_NGINX_DATABASE_URL};

our $OA = '0190f000-0000-7000-8000-00000000000a';   # organizations
our $OB = '0190f000-0000-7000-8000-00000000000b';
our $U = '0190f000-0000-7000-8000-0000000000';      # sessions $U . a1.. b1..
our $M = '0190f000-0000-7000-8000-0000000001';      # messages

sql(<<"SQL");
DELETE FROM jobs WHERE payload->>'message_id' LIKE '0190f000-%';
DELETE FROM organizations WHERE id IN ('$OA', '$OB') OR name IN ('user-a', 'user-b');
INSERT INTO organizations (id, name) VALUES ('$OA', 'user-a'), ('$OB', 'user-b');
INSERT INTO sessions (id, org_id, source_lang, target_lang, user_id, metadata, created_at)
VALUES ('${U}a1', '$OA', 'en', 'es', 'alice', '{"plan": "pro", "team": "red"}', '2026-04-01T10:00:00Z'),
       ('${U}a2', '$OA', 'en', 'es', 'alice', '{"plan": "free"}',             '2026-04-01T11:00:00Z'),
       ('${U}a3', '$OA', 'en', 'es', 'bob',   '{"plan": "pro"}',              '2026-04-01T12:00:00Z'),
       ('${U}a4', '$OA', 'en', 'es', NULL,    NULL,                           '2026-04-01T13:00:00Z'),
       ('${U}b1', '$OB', 'en', 'es', 'alice', '{"plan": "pro"}',              '2026-04-01T14:00:00Z');
INSERT INTO messages (id, session_id, org_id, source_lang, target_lang, source_text, translated_text)
SELECT ('$M' || t.n)::uuid, s.id, s.org_id, 'en', 'es', 'the blue zeppelin lands', 'el zepelín azul aterriza'
FROM (VALUES ('01', '${U}a1'), ('02', '${U}a2'), ('03', '${U}a3'), ('04', '${U}a4'), ('05', '${U}b1'))
     AS t(n, sid) JOIN sessions s ON s.id = t.sid::uuid;
INSERT INTO jobs (kind, payload)
    SELECT 'embed_message', jsonb_build_object('message_id', id)
    FROM messages WHERE id::text LIKE '$M%';
SQL

system($ENV{CHATHISTORY_WORKER} // 'build/chathistory-worker', 'run', '--drain',
       '--database-url', $db) == 0
    or die "the worker failed to embed the messages\n";

our $KA = `$ENV{CHATHISTORY_WORKER} --database-url '$db' apikey create --org user-a --name ua 2>/dev/null`;
chomp $KA;
die "the worker made no key: '$KA'\n" unless $KA =~ /^chk_[A-Za-z0-9_-]{43}$/;
$ENV{TEST_NGINX_KEY_A} = $KA;

our $GATEWAY = <<'CONF';
    location /api/ { chathistory_api; }
    location /v1/ { chathistory_auth api_key; chathistory_api; }
CONF

# the ids a list or search answer names, in order, as "a1 a2 ..."
sub ids {
    my ($body) = @_;
    my @ids = $body =~ /"(?:session|data":\[)?\{?"id":"0190f000-0000-7000-8000-0000000000([ab]\d)"/g;
    return join ' ', @ids;
}

run_tests();

__DATA__

=== TEST 1: a session is created with its user_id and metadata
--- request eval
"POST /api/sessions
{\"source_lang\": \"en\", \"target_lang\": \"es\", \"user_id\": \"carol\", \"metadata\": {\"plan\": \"pro\", \"seats\": 3, \"tags\": [\"x\"]}}"
--- error_code: 201
--- response_body_like: "audio_enabled":false,"user_id":"carol","metadata":\{"plan": "pro", "tags": \["x"\], "seats": 3\},"created_at"



=== TEST 2: absent, they are null; null is absent
--- request
POST /api/sessions
{"source_lang": "en", "target_lang": "es", "user_id": null, "metadata": null}
--- error_code: 201
--- response_body_like: "user_id":null,"metadata":null,



=== TEST 3: user_id is 1 to 200 printable characters of UTF-8
--- request eval
[map { "POST /api/sessions\n{\"source_lang\": \"en\", \"target_lang\": \"es\", \"user_id\": $_}" }
 '""', '"' . ('u' x 201) . '"', '"a\u0007b"', '"a\u0085b"', '"tab\there"', '42', '["alice"]',
 '"' . ("\xc3\xa9" x 200) . '"']
--- error_code eval
[400, 400, 400, 400, 400, 400, 400, 201]
--- response_body_like eval
[(Chathistory::error_like(q{invalid_request},
                          q{user_id must be 1 to 200 printable characters of UTF-8})) x 7,
 qr/"user_id":"(\x{c3}\x{a9}){200}"/]



=== TEST 4: metadata is a JSON object of at most 8192 bytes
--- request eval
[map { "POST /api/sessions\n{\"source_lang\": \"en\", \"target_lang\": \"es\", \"metadata\": $_}" }
 '[1]', '"plan"', '7', 'true', '{"k": "' . ('x' x 8200) . '"}', '{"k": "' . ('x' x 8180) . '"}']
--- error_code eval
[400, 400, 400, 400, 400, 201]
--- response_body_like eval
[(Chathistory::error_like(q{invalid_request}, q{metadata must be a JSON object})) x 4,
 Chathistory::error_like(q{invalid_request}, q{metadata must be at most 8192 bytes as compact JSON}),
 qr/"metadata":\{"k": "x{8180}"\}/]
--- config
    location /api/ { chathistory_api_max_body_size 32k; chathistory_api; }



=== TEST 5: PATCH sets, changes and clears them; other members stay
--- request eval
["PATCH /api/sessions/$main::U" . "a4\n{\"user_id\": \"dave\"}",
 "PATCH /api/sessions/$main::U" . "a4\n{\"metadata\": {\"plan\": \"team\"}}",
 "PATCH /api/sessions/$main::U" . "a4\n{\"metadata\": {\"seats\": 2}, \"title\": \"t\"}",
 "PATCH /api/sessions/$main::U" . "a4\n{\"user_id\": null, \"metadata\": null}",
 "PATCH /api/sessions/$main::U" . "a4\n{\"user_id\": \"\"}",
 "PATCH /api/sessions/$main::U" . "a4\n{\"metadata\": [\"no\"]}"]
--- error_code eval
[200, 200, 200, 200, 400, 400]
--- response_body_like eval
[qr/"title":null,.*"user_id":"dave","metadata":null,/,
 qr/"user_id":"dave","metadata":\{"plan": "team"\},/,
 qr/"title":"t",.*"user_id":"dave","metadata":\{"seats": 2\},/,
 qr/"title":"t",.*"user_id":null,"metadata":null,/,
 qr/user_id must be/, qr/metadata must be a JSON object/]



=== TEST 6: the list filters by user_id and by metadata containment
--- request eval
["GET /api/sessions?org_id=$main::OA&user_id=alice",
 "GET /api/sessions?org_id=$main::OA&user_id=bob",
 "GET /api/sessions?org_id=$main::OA&user_id=nobody",
 "GET /api/sessions?org_id=$main::OA&metadata=%7B%22plan%22%3A%22pro%22%7D",
 "GET /api/sessions?org_id=$main::OA&metadata=%7B%22plan%22%3A%22pro%22%7D&user_id=alice",
 "GET /api/sessions?org_id=$main::OA&metadata=%7B%7D",
 "GET /api/sessions?user_id=alice&limit=100",
 "GET /api/sessions?org_id=$main::OA&user_id=alice&limit=1"]
--- error_code eval
[200, 200, 200, 200, 200, 200, 200, 200]
--- response_body_like eval
[qr/^\{"data":\[\{"id":"${main::U}a2".*\{"id":"${main::U}a1"[^\]]*\],"next_cursor":null\}$/,
 qr/^\{"data":\[\{"id":"${main::U}a3"[^\]]*\],"next_cursor":null\}$/,
 qr/^\{"data":\[\],"next_cursor":null\}$/,
 qr/^\{"data":\[\{"id":"${main::U}a3".*\{"id":"${main::U}a1"[^\]]*\],"next_cursor":null\}$/,
 qr/^\{"data":\[\{"id":"${main::U}a1"[^\]]*\],"next_cursor":null\}$/,
 qr/^\{"data":\[\{"id":"${main::U}a3".*\{"id":"${main::U}a2".*\{"id":"${main::U}a1"[^\]]*\],"next_cursor":null\}$/,
 qr/"id":"${main::U}b1".*"id":"${main::U}a2".*"id":"${main::U}a1"/,
 qr/^\{"data":\[\{"id":"${main::U}a2"[^\]]*\],"next_cursor":"[^"]+"\}$/]



=== TEST 7: bad filters are 400
--- request eval
["GET /api/sessions?metadata=%5B1%5D",
 "GET /api/sessions?metadata=plan",
 "GET /api/sessions?metadata=%7B%22a%22%3A",
 "GET /api/sessions?metadata=",
 "GET /api/sessions?user_id=",
 "GET /api/sessions?user_id=a%00b",
 "GET /api/sessions?user_id=" . ('u' x 201)]
--- error_code eval
[400, 400, 400, 400, 400, 400, 400]
--- response_body_like eval
[(Chathistory::error_like(q{invalid_request}, q{metadata must be a URL-encoded JSON object})) x 4,
 (Chathistory::error_like(q{invalid_request}, q{user_id must be 1 to 200 printable characters of UTF-8})) x 3]



=== TEST 8: search filters by user_id and metadata, in all three modes
--- request eval
[map { my $m = $_; map { "POST /api/search\n{\"query\": \"blue zeppelin\", \"mode\": \"$m\", \"org_id\": \"$main::OA\", $_}" }
       '"user_id": "alice"', '"metadata": {"plan": "pro"}', '"user_id": "alice", "metadata": {"team": "red"}' }
 qw(semantic keyword hybrid)]
--- error_code eval
[(200) x 9]
--- response_body_like eval
[(qr/^\{"data":\[(?:\{"message":\{"id":"${main::M}0[12]".*?"score":[\d.]+\},?){2}\]\}$/,
  qr/^\{"data":\[(?:\{"message":\{"id":"${main::M}0[13]".*?"score":[\d.]+\},?){2}\]\}$/,
  qr/^\{"data":\[\{"message":\{"id":"${main::M}01".*"user_id":"alice","metadata":\{"plan": "pro", "team": "red"\}.*"score":[\d.]+\}\]\}$/) x 3]



=== TEST 9: search refuses bad filters
--- request eval
["POST /api/search\n{\"query\": \"zeppelin\", \"user_id\": 7}",
 "POST /api/search\n{\"query\": \"zeppelin\", \"metadata\": \"pro\"}"]
--- error_code eval
[400, 400]
--- response_body_like eval
[Chathistory::error_like(q{invalid_request}, q{user_id must be 1 to 200 printable characters of UTF-8}),
 Chathistory::error_like(q{invalid_request}, q{metadata must be a JSON object})]



=== TEST 10: on /v1, the filters stay within the key's organization
--- config eval: $main::GATEWAY
--- more_headers eval
["Authorization: Bearer $main::KA", "Authorization: Bearer $main::KA",
 "Authorization: Bearer $main::KA", "Authorization: Bearer $main::KA", ""]
--- request eval
["GET /v1/sessions?user_id=alice",
 "GET /v1/sessions?metadata=%7B%22plan%22%3A%22pro%22%7D",
 "POST /v1/search\n{\"query\": \"zeppelin\", \"mode\": \"keyword\", \"user_id\": \"alice\", \"limit\": 100}",
 "GET /v1/sessions?user_id=alice&org_id=$main::OB",
 "GET /api/sessions?user_id=alice&org_id=$main::OB"]
--- error_code eval
[200, 200, 200, 403, 200]
--- response_body_like eval
[qr/^\{"data":\[\{"id":"${main::U}a2".*\{"id":"${main::U}a1"[^\]]*\],"next_cursor":null\}$/,
 qr/^\{"data":\[\{"id":"${main::U}a3".*\{"id":"${main::U}a1"[^\]]*\],"next_cursor":null\}$/,
 qr/^\{"data":\[(?:\{"message":\{"id":"${main::M}0[12]".*?"score":[\d.]+\},?){2}\]\}$/,
 qr/"code":"forbidden"/,
 qr/^\{"data":\[\{"id":"${main::U}b1"[^\]]*\],"next_cursor":null\}$/]



=== TEST 11: the migration rewrote no row: sessions made before read null
--- init
Test::More::is(main::sql("SELECT count(*) FROM sessions WHERE id = '${main::U}a4'"
                         . " AND user_id IS NULL AND metadata IS NULL"), 1,
               'the fixture without them reads NULL');
--- request eval
"GET /api/sessions/$main::U" . "a4"
--- error_code: 200
--- response_body_like: "user_id":null,"metadata":null,
