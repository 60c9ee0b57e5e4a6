# Search with the query embedded by an embedding server (Ollama or
# OpenAI-compatible, here t/fake/embed-server.pl) through an in-memory
# subrequest to an internal location, while the worker embeds the corpus
# with the same provider against the same server; and the failures of that
# server, answered 503 in bounded time.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP ();
use POSIX ();
use Chathistory;

no_shuffle();
no_long_string();
add_block_preprocessor(\&chathistory_block);

my $S = '0190a000-0000-7000-8000-0000000006';      # sessions $S . a1, b1, c1
my $M = '0190a000-0000-7000-8000-0000000006';      # messages $M . 01..34
my $KEY = 'sk-test-embedding-key';

my @texts = ('The train to Lisbon leaves at nine',
             'I would like a coffee with milk',
             'Where is the nearest pharmacy',
             'My flight number is LH 4521');

my (@servers, %log);

# Start the fake server with these options; returns its port.
sub fake_server {
    my ($name, @args) = @_;
    my $dir = tempdir(CLEANUP => 1);
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        { exec $^X, 't/fake/embed-server.pl', '--port-file', "$dir/port",
               '--log', "$dir/requests", @args };
        POSIX::_exit(127);
    }
    push @servers, $pid;
    $log{$name} = "$dir/requests";
    for (1 .. 200) {
        last if -s "$dir/port";
        select undef, undef, undef, 0.05;
    }
    open my $fh, '<', "$dir/port" or die "the fake server $name did not start\n";
    chomp(my $port = <$fh>);
    return $port;
}

END {
    local $?;
    kill 'TERM', $_ for @servers;
    waitpid $_, 0 for @servers;
}

# The requests a fake server was sent, one JSON object each.
sub requests {
    my ($name) = @_;
    open my $fh, '<', $log{$name} or return ();
    return map { JSON::PP::decode_json($_) } <$fh>;
}

my $OK = fake_server('ok');
my $KEYED = fake_server('keyed', '--require-key', $KEY);
my $SMALL = fake_server('small', '--dim', '384');
my $SLOW = fake_server('slow', '--delay', '5');
my $FAILING = fake_server('failing', '--fail-text', 'boom');

# a port where nothing listens
my $DOWN = do {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 1) or die "listen: $!";
    $s->sockport;
};

# Four messages in session $S.$tag, embedded by the worker with a provider.
sub corpus {
    my ($tag, $first, $env, @flags) = @_;
    my $values = join ",\n", map {
        sprintf "('%s%02d', '%s')", $M, $first + $_, $texts[$_]
    } 0 .. $#texts;

    sql(<<"SQL");
DELETE FROM jobs WHERE payload->>'message_id' IN
    (SELECT id::text FROM messages WHERE session_id = '$S$tag');
DELETE FROM sessions WHERE id = '$S$tag';
INSERT INTO sessions (id, org_id, source_lang, target_lang)
    SELECT '$S$tag', id, 'en', 'es' FROM organizations WHERE name = 'default';
INSERT INTO messages (id, session_id, org_id, source_lang, target_lang,
                      source_text, translated_text)
SELECT t.id::uuid, s.id, s.org_id, 'en', 'es', t.src, 'traducido'
FROM (VALUES $values) AS t(id, src) JOIN sessions s ON s.id = '$S$tag';
INSERT INTO jobs (kind, payload)
    SELECT 'embed_message', jsonb_build_object('message_id', id)
    FROM messages WHERE session_id = '$S$tag';
SQL

    local %ENV = (%ENV, %$env);
    system($ENV{CHATHISTORY_WORKER} // 'build/chathistory-worker', 'run',
           '--drain', '--database-url', $ENV{TEST_NGINX_DATABASE_URL},
           @flags) == 0
        or die "the worker failed to embed the corpus $tag\n";
}

corpus('a1', 1, {}, '--embedding-provider', 'ollama',
       '--embedding-model', 'all-minilm',
       '--embedding-url', "http://127.0.0.1:$OK");
corpus('b1', 11, { CHATHISTORY_EMBEDDING_API_KEY => $KEY },
       '--embedding-provider', 'openai',
       '--embedding-model', 'text-embedding-3-small',
       '--embedding-url', "http://127.0.0.1:$KEYED");
corpus('c1', 21, {}, '--embedding-provider', 'ollama',
       '--embedding-model', 'nomic-embed-text',
       '--embedding-url', "http://127.0.0.1:$OK");

is(sql("SELECT string_agg(DISTINCT embedding_model, ',' ORDER BY embedding_model)"
       . " FROM messages WHERE session_id::text LIKE '$S%'"
       . " AND embedding IS NOT NULL"),
   'all-minilm,nomic-embed-text,text-embedding-3-small',
   'the worker embedded the three corpora');

# The API location with a provider and model, and the internal location the
# module's subrequests go to.
sub conf {
    my ($provider, $model, $embed) = @_;
    return <<"_EOC_";
    location /api/ {
        chathistory_api;
        chathistory_embedding_provider $provider;
        chathistory_embedding_model $model;
        chathistory_embedding_url /_embed;
    }
    location = /_embed {
        internal;
        proxy_connect_timeout 1s;
        proxy_read_timeout 1s;
        subrequest_output_buffer_size 64k;
$embed
    }
_EOC_
}

sub search {
    my ($session, $query, %o) = @_;
    my $mode = $o{mode} ? qq(, "mode": "$o{mode}") : '';
    return qq(POST /api/search\n{"query": "$query", "session_id": "$S$session",)
           . qq( "limit": 2$mode});
}

our $OK_PORT = $OK;
our $KEYED_PORT = $KEYED;
our $SMALL_PORT = $SMALL;
our $SLOW_PORT = $SLOW;
our $FAILING_PORT = $FAILING;
our $DOWN_PORT = $DOWN;
our $KEY_VALUE = $KEY;

run_tests();

my @ok = requests('ok');
ok((grep { $_->{path} eq '/api/embed'
           && "@{$_->{inputs}}" eq "search_query: $texts[2]" } @ok),
   'a nomic model gets its query prefix');
ok((grep { grep { /^search_document: / } @{$_->{inputs}} } @ok),
   'and the worker its document prefix');
my @flight = grep { "@{$_->{inputs}}" eq $texts[3] } @ok;
ok(@flight && !grep({ $_->{auth} ne '' } @flight),
   'the client\'s Authorization does not reach the embedding server');
ok((grep { $_->{path} eq '/v1/embeddings' && "@{$_->{inputs}}" eq $texts[2]
           && $_->{auth} eq "Bearer $KEY" && $_->{status} == 200 }
        requests('keyed')),
   'the OpenAI query went with the key of proxy_set_header');

__DATA__

=== TEST 1: ollama: the query's vector comes from the server, the same text ranks first
--- config eval: main::conf('ollama', 'all-minilm', "proxy_pass http://127.0.0.1:$::OK_PORT/api/embed;")
--- request eval: main::search('a1', 'Where is the nearest pharmacy')
--- error_code: 200
--- response_body_like eval
qr/^\{"data":\[\{"message":\{"id":"0190a000-0000-7000-8000-000000000603",.*"score":0\.\d+\},\{"message":\{"id":"0190a000-0000-7000-8000-00000000060\d"/



=== TEST 2: ollama: messages embedded by another model are not compared
--- config eval: main::conf('ollama', 'all-minilm', "proxy_pass http://127.0.0.1:$::OK_PORT/api/embed;")
--- request eval: main::search('b1', 'Where is the nearest pharmacy')
--- error_code: 200
--- response_body
{"data":[]}



=== TEST 3: ollama: hybrid search, and the client's own Authorization is not passed on
--- config eval: main::conf('ollama', 'all-minilm', "proxy_pass http://127.0.0.1:$::OK_PORT/api/embed;")
--- request eval: main::search('a1', 'My flight number is LH 4521', mode => 'hybrid')
--- more_headers
Authorization: Bearer client-secret
--- error_code: 200
--- response_body_like: ^\{"data":\[\{"message":\{"id":"0190a000-0000-7000-8000-000000000604",



=== TEST 4: ollama: an old server's /api/embeddings answers as well
--- config eval: main::conf('ollama', 'all-minilm', "proxy_pass http://127.0.0.1:$::OK_PORT/api/embeddings;")
--- request eval: main::search('a1', 'I would like a coffee with milk')
--- error_code: 200
--- response_body_like: ^\{"data":\[\{"message":\{"id":"0190a000-0000-7000-8000-000000000602",



=== TEST 5: ollama with nomic-embed-text: queries get their prefix, results do not
--- config eval: main::conf('ollama', 'nomic-embed-text', "proxy_pass http://127.0.0.1:$::OK_PORT/api/embed;")
--- request eval: main::search('c1', 'Where is the nearest pharmacy')
--- error_code: 200
--- response_body_like: ^\{"data":\[\{"message":\{"id":"0190a000-0000-7000-8000-00000000062\d",.*\}\]\}$
--- response_body_unlike: search_(query|document)



=== TEST 6: openai: with the key set by the internal location
--- config eval
main::conf('openai', 'text-embedding-3-small', "proxy_pass http://127.0.0.1:$::KEYED_PORT/v1/embeddings;\n"
           . "proxy_set_header Authorization \"Bearer $::KEY_VALUE\";")
--- request eval: main::search('b1', 'Where is the nearest pharmacy')
--- error_code: 200
--- response_body_like eval
qr/^\{"data":\[\{"message":\{"id":"0190a000-0000-7000-8000-000000000613",.*"score":0\.\d+\},/



=== TEST 7: openai: a server that refuses the key is 503
--- config eval: main::conf('openai', 'text-embedding-3-small', "proxy_pass http://127.0.0.1:$::KEYED_PORT/v1/embeddings;")
--- request eval: main::search('b1', 'Where is the nearest pharmacy')
--- error_code: 503
--- response_body_like: ^\{"error":\{"code":"unavailable","message":"the embedding server refused the query","request_id":"[0-9a-f]{32}"\}\}$
--- error_log
refused the query with status 401



=== TEST 8: keyword search does not need the embedding server
--- config eval: main::conf('ollama', 'all-minilm', "proxy_pass http://127.0.0.1:$::DOWN_PORT/api/embed;")
--- request eval: main::search('a1', 'pharmacy', mode => 'keyword')
--- error_code: 200
--- response_body_like: ^\{"data":\[\{"message":\{"id":"0190a000-0000-7000-8000-000000000603",



=== TEST 9: a server that is down is 503
--- config eval: main::conf('ollama', 'all-minilm', "proxy_pass http://127.0.0.1:$::DOWN_PORT/api/embed;")
--- request eval: main::search('a1', 'Where is the nearest pharmacy')
--- error_code: 503
--- response_body_like: ^\{"error":\{"code":"unavailable","message":"the embedding server is unreachable","request_id":"[0-9a-f]{32}"\}\}$
--- error_log
Connection refused
is unreachable



=== TEST 10: a slow server is 503 after proxy_read_timeout, not after the server
--- config eval: main::conf('ollama', 'all-minilm', "proxy_pass http://127.0.0.1:$::SLOW_PORT/api/embed;")
--- request eval: main::search('a1', 'Where is the nearest pharmacy')
--- timeout: 3
--- error_code: 503
--- response_body_like: "message":"the embedding server did not answer in time"
--- error_log
upstream timed out
timed out



=== TEST 11: a model of another dimension is 503, naming the mismatch
--- config eval: main::conf('ollama', 'all-minilm', "proxy_pass http://127.0.0.1:$::SMALL_PORT/api/embed;")
--- request eval: main::search('a1', 'Where is the nearest pharmacy')
--- error_code: 503
--- response_body_like: "message":"the embedding model gives vectors of another dimension than the stored messages \(768\)"
--- error_log
gave 384 dimensions, not 768



=== TEST 12: a server error is 503
--- config eval: main::conf('ollama', 'all-minilm', "proxy_pass http://127.0.0.1:$::FAILING_PORT/api/embed;")
--- request eval: main::search('a1', 'boom')
--- error_code: 503
--- response_body_like: "message":"the embedding server failed to embed the query"
--- error_log
failed with status 500



=== TEST 13: an answer that is not an embedding is 503
--- config eval
main::conf('ollama', 'all-minilm', "return 200 '{\"embeddings\":\"none\"}';")
--- request eval: main::search('a1', 'Where is the nearest pharmacy')
--- error_code: 503
--- response_body_like: "message":"the embedding server sent no embedding"
--- error_log
sent no embedding in "{"embeddings":"none"}"



=== TEST 13b: an answer larger than subrequest_output_buffer_size is 503, and says so
--- config eval
main::conf('ollama', 'all-minilm', "proxy_pass http://127.0.0.1:$::OK_PORT/api/embed;")
. "location = /_embed_small { internal; subrequest_output_buffer_size 1k;"
. " proxy_pass http://127.0.0.1:$::OK_PORT/api/embed; }"
. "location /small/ { chathistory_api; chathistory_embedding_provider ollama;"
. " chathistory_embedding_model all-minilm; chathistory_embedding_url /_embed_small; }"
--- request eval
"POST /small/search\n{\"query\": \"Where is the nearest pharmacy\", \"limit\": 2}"
--- error_code: 503
--- response_body_like: "message":"the embedding server's answer is larger than subrequest_output_buffer_size"
--- error_log
larger than subrequest_output_buffer_size



=== TEST 14: an all-zero vector is 503
--- config eval
main::conf('ollama', 'all-minilm', "return 200 '{\"embedding\":[" . CORE::join(",", (0) x 768) . "]}';")
--- request eval: main::search('a1', 'Where is the nearest pharmacy')
--- error_code: 503
--- response_body_like: "message":"the embedding server sent no embedding"
--- error_log
not a vector of numbers



=== TEST 15: configuration: an unknown provider
--- config
    location /api/ {
        chathistory_api;
        chathistory_embedding_provider word2vec;
    }
--- request
GET /api/search
--- must_die
--- error_log
invalid chathistory_embedding_provider "word2vec", it must be hash, ollama or openai



=== TEST 16: configuration: a server's provider needs a model
--- config
    location /api/ {
        chathistory_api;
        chathistory_embedding_provider ollama;
        chathistory_embedding_url /_embed;
    }
--- request
GET /api/search
--- must_die
--- error_log
chathistory_embedding_provider "ollama" requires chathistory_embedding_model



=== TEST 17: configuration: the URL is a location's URI, not the server's
--- config
    location /api/ {
        chathistory_api;
        chathistory_embedding_provider openai;
        chathistory_embedding_model text-embedding-3-small;
        chathistory_embedding_url http://127.0.0.1:11434;
    }
--- request
GET /api/search
--- must_die
--- error_log
requires chathistory_embedding_url to be the URI of an internal location
