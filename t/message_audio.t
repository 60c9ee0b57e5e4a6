# A message's stored audio: the whole file, ranges, and every way to miss.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use File::Temp qw(tempdir);
use File::Copy qw(copy);
use Chathistory;

no_shuffle();
no_long_string();

my $S = '0190a000-0000-7000-8000-0000000000a1';
my $O = '0190a000-0000-7000-8000-0000000000a2';   # another session
my $M = '0190a000-0000-7000-8000-00000000a1';     # messages $M . 01..03

sql(<<"SQL");
DELETE FROM sessions WHERE id IN ('$S', '$O');
INSERT INTO sessions (id, org_id, source_lang, target_lang, audio_enabled)
    SELECT s, id, 'en', 'es', true FROM organizations, unnest(ARRAY['$S', '$O']::uuid[]) s
    WHERE name = 'default';
INSERT INTO messages (id, session_id, org_id, source_lang, target_lang, source_text,
                      translated_text, audio_path, audio_ms)
    SELECT ('$M' || n)::uuid, '$S', org_id, 'en', 'es', 'hi', 'hola',
           CASE WHEN n <> '02' THEN '$S/$M' || n || '.opus' END, 2557
    FROM sessions, unnest(ARRAY['01', '02', '03']) n WHERE id = '$S';
SQL

my $storage = tempdir(CLEANUP => 1);
chmod 0755, $storage;
mkdir "$storage/$S";
copy('t/fixtures/audio/speech.opus', "$storage/$S/${M}01.opus") or die "copy: $!";
$ENV{TEST_NGINX_STORAGE} = $storage;

our $opus = do {
    open my $fh, '<:raw', 't/fixtures/audio/speech.opus' or die;
    local $/;
    <$fh>;
};
our $size = length $opus;

add_block_preprocessor(sub {
    my $block = shift;
    chathistory_block($block);
    $block->set_value("config", <<"_EOC_") unless $block->config =~ /storage/;
    chathistory_audio_storage_path $storage;
    location /api/ { chathistory_api; }
_EOC_
});

run_tests();

__DATA__

=== TEST 1: the audio is served whole, as Ogg Opus
--- request
GET /api/sessions/0190a000-0000-7000-8000-0000000000a1/messages/0190a000-0000-7000-8000-00000000a101/audio
--- error_code: 200
--- response_headers eval
"Content-Type: audio/ogg; codecs=opus\nContent-Length: $::size\nAccept-Ranges: bytes"
--- response_body eval
$::opus



=== TEST 2: a range is 206 with its part
--- request
GET /api/sessions/0190a000-0000-7000-8000-0000000000a1/messages/0190a000-0000-7000-8000-00000000a101/audio
--- more_headers
Range: bytes=4-9
--- error_code: 206
--- response_headers eval
"Content-Range: bytes 4-9/$::size\nContent-Length: 6"
--- response_body eval
substr($::opus, 4, 6)



=== TEST 3: HEAD tells the size without the body
--- request
HEAD /api/sessions/0190a000-0000-7000-8000-0000000000a1/messages/0190a000-0000-7000-8000-00000000a101/audio
--- error_code: 200
--- response_headers eval
"Content-Length: $::size"
--- response_body



=== TEST 4: a message without audio is 404
--- request
GET /api/sessions/0190a000-0000-7000-8000-0000000000a1/messages/0190a000-0000-7000-8000-00000000a102/audio
--- error_code: 404
--- response_body_like eval
Chathistory::error_like(q{not_found}, q{the message has no audio})



=== TEST 5: a file gone from the disk is 404, and logged
--- request
GET /api/sessions/0190a000-0000-7000-8000-0000000000a1/messages/0190a000-0000-7000-8000-00000000a103/audio
--- error_code: 404
--- response_body_like eval
Chathistory::error_like(q{not_found}, q{the message has no audio})
--- error_log
is missing
--- no_error_log
[alert]
[crit]



=== TEST 6: a message asked for under another session is 404
--- request
GET /api/sessions/0190a000-0000-7000-8000-0000000000a2/messages/0190a000-0000-7000-8000-00000000a101/audio
--- error_code: 404
--- response_body_like eval
Chathistory::error_like(q{not_found}, q{no such message})



=== TEST 7: malformed ids are 400, paths that climb are no resource
--- request eval
[
"GET /api/sessions/0190a000-0000-7000-8000-0000000000a1/messages/x1/audio",
"GET /api/sessions/0190a000-0000-7000-8000-0000000000a1/messages/..%2f..%2fetc%2fpasswd/audio",
]
--- error_code eval
[400, 404]
--- response_body_like eval
[
Chathistory::error_like(q{invalid_request}, q{the id in the path is not a UUID}),
Chathistory::error_like(q{not_found}, q{no such resource}),
]



=== TEST 8: audio is read-only
--- request
DELETE /api/sessions/0190a000-0000-7000-8000-0000000000a1/messages/0190a000-0000-7000-8000-00000000a101/audio
--- error_code: 405
--- response_headers
Allow: GET, HEAD
