# Embeddings through the three providers: the built-in hash, Ollama (batch,
# old-server fallback, nomic prefix) and OpenAI-compatible (key, index
# order); cutting long texts, normalising, checking the dimension, timeouts.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use ChwTest;
use JSON::PP;
use Test::More;
use Time::HiRes qw(time);

setup_db();

sub requests {
    my ($log) = @_;
    return map { decode_json($_) } grep { /\S/ } split /\n/, slurp($log);
}

sub reset_db { sql("DELETE FROM jobs; DELETE FROM sessions") }

subtest 'hash (default): unit vectors, lexical similarity' => sub {
    make_messages(1, text => 'the weather is lovely today');
    make_messages(1, text => 'the weather is lovely');
    make_messages(1, text => 'quarterly tax invoice overdue');
    my ($rc) = worker('run', '--drain');
    is $rc, 0, 'drained';
    my @r = sql("SELECT embedding_model, round(vector_norm(embedding)::numeric,"
                . " 5), vector_dims(embedding) FROM messages");
    is scalar(grep { $_->[0] eq 'hash-v1' && $_->[1] == 1 && $_->[2] == 768 }
              @r), 3, 'hash-v1, 768 dimensions, norm 1';
    my $near = sql("SELECT 1 - (a.embedding <=> b.embedding) FROM messages a,"
        . " messages b WHERE a.source_text LIKE 'the weather is lovely today%'"
        . " AND b.source_text LIKE 'the weather is lovely 1'");
    my $far = sql("SELECT 1 - (a.embedding <=> b.embedding) FROM messages a,"
        . " messages b WHERE a.source_text LIKE 'the weather is lovely today%'"
        . " AND b.source_text LIKE 'quarterly%'");
    cmp_ok $near, '>', $far + 0.2, "similar texts are closer ($near > $far)";
    reset_db();
};

subtest 'ollama: one batched call, nomic prefix, keep-alive, normalised' => sub {
    make_messages(12);
    my ($url, $log) = fake_server();
    my ($rc) = worker('--embedding-provider', 'ollama', '--embedding-url',
                      $url, '--batch-size', '5', 'run', '--drain');
    is $rc, 0, 'drained';
    my @req = grep { $_->{path} eq '/api/embed' } requests($log);
    is_deeply [map { scalar @{$_->{inputs}} } @req], [1, 5, 5, 2],
        'the probe, then one call per batch of jobs';
    like $req[1]{inputs}[0], qr/^search_document: hello world \d+\nhola mundo/,
        'source and translation, with the nomic prefix';
    is scalar(keys %{{ map { $_->{conn} => 1 } @req }}), 1,
        'one connection for every call';
    is sql("SELECT count(*) FROM messages WHERE embedding_model ="
           . " 'nomic-embed-text' AND abs(vector_norm(embedding) - 1) < 1e-5"),
       12, 'stored normalised, with the model name';
    reset_db();
};

subtest 'ollama: another model, no prefix; old server fallback' => sub {
    make_messages(3);
    my ($url, $log) = fake_server('--old-ollama');
    my ($rc, $err) = worker('--embedding-provider', 'ollama',
                            '--embedding-url', "$url/",
                            '--embedding-model', 'mxbai-embed-large',
                            'run', '--drain');
    is $rc, 0, 'drained';
    my @req = requests($log);
    is $req[0]{path}, '/api/embed', 'tries /api/embed first';
    is scalar(grep { $_->{path} eq '/api/embeddings' } @req), 4,
        'then /api/embeddings, one text per call';
    is scalar(grep { $_->{path} eq '/api/embed' } @req), 1, 'and only then';
    unlike $req[-1]{inputs}[0], qr/search_document/, 'no prefix';
    like $err, qr/falling back to \/api\/embeddings/, 'fallback logged';
    is sql("SELECT count(*) FROM messages WHERE embedding_model ="
           . " 'mxbai-embed-large'"), 3, 'all embedded';
    reset_db();
};

subtest 'long texts are cut at a UTF-8 boundary' => sub {
    make_messages(1, text => "\xc3\xa9" x 5000);
    my ($url, $log) = fake_server();
    my ($rc) = worker('--embedding-provider', 'ollama', '--embedding-url',
                      $url, '--embedding-max-chars', '101', 'run', '--drain');
    is $rc, 0, 'drained';
    my @req = requests($log);
    my $in = $req[-1]{inputs}[0];
    utf8::encode(my $bytes = $in);
    is length($bytes), length('search_document: ') + 100,
        'cut to 100 bytes, not into a character';
    like $in, qr/^search_document: \x{e9}+$/, 'only whole characters';
    reset_db();
};

sub fake_vector {
    my ($text, $dim) = @_;
    utf8::encode($text);
    my @v = (0) x $dim;
    my $i = 0;
    $v[($_ * 31 + $i++) % $dim] += 1 + ($_ % 7) for unpack 'C*', $text;
    $v[0] += 1;
    my $n = 0;
    $n += $_ * $_ for @v;
    return [map { $_ / sqrt($n) } @v];
}

subtest 'openai: API key, answers out of order' => sub {
    make_messages(4);
    my ($url, $log) = fake_server('--require-key', 'sk-test-123');
    my ($rc, $err) = worker({ env => { CHATHISTORY_EMBEDDING_API_KEY =>
                                       'sk-test-123' } },
                            '--embedding-provider', 'openai',
                            '--embedding-url', "$url/v1",
                            '--embedding-model', 'text-embedder',
                            'run', '--drain');
    is $rc, 0, 'drained';
    my @req = requests($log);
    is $req[-1]{path}, '/v1/embeddings', 'POST /v1/embeddings';
    is $req[-1]{auth}, 'Bearer sk-test-123', 'bearer key sent';
    unlike $err, qr/sk-test-123/, 'the key is never logged';
    my $bad = 0;
    for my $row (sql("SELECT source_text, translated_text, embedding::text"
                     . " FROM messages")) {
        my $got = decode_json($row->[2]);
        my $want = fake_vector("$row->[0]\n$row->[1]", 768);
        $bad++ if grep { abs($got->[$_] - $want->[$_]) > 1e-5 } 0 .. 767;
    }
    is $bad, 0, 'each message got its own vector (by "index")';
    reset_db();

    make_messages(1);
    sql("UPDATE jobs SET max_attempts = 1");
    ($rc, $err) = worker('--embedding-provider', 'openai',
                         '--embedding-url', $url,
                         '--embedding-model', 'text-embedder',
                         'run', '--drain');
    is $rc, 0, 'no key: drained';
    like $err, qr/embedding server not ready.*answered 401/,
        'the probe failure is a warning';
    like sql("SELECT last_error FROM jobs WHERE status = 'failed'"),
        qr/answered 401/, 'the job records the 401';
    reset_db();
};

subtest 'a model of another dimension stops the start-up' => sub {
    make_messages(2);
    my ($url) = fake_server('--dim', '384');
    my ($rc, $err) = worker('--embedding-provider', 'ollama',
                            '--embedding-url', $url, 'run', '--drain');
    is $rc, 1, 'exit status 1';
    like $err, qr/does not fit messages.embedding.*expected 768 dimensions, not 384/,
        'says why';
    is sql("SELECT count(*) FROM messages WHERE embedding IS NOT NULL"), 0,
        'no row written';
    is sql("SELECT count(*) FROM jobs WHERE status = 'queued'"), 2,
        'no job touched';
    reset_db();
};

subtest 'openai needs a URL and a model' => sub {
    my ($rc, $err) = worker('--embedding-provider', 'openai', 'run',
                            '--drain');
    is $rc, 1, 'exit status 1';
    like $err, qr/needs embedding_url and embedding_model/, 'says why';
};

subtest 'a slow server: the request times out, the job is retried' => sub {
    make_messages(1, text => 'slow');
    my ($url) = fake_server('--delay', '5', '--delay-text', 'slow');
    sql("UPDATE jobs SET max_attempts = 1");
    my $t0 = time;
    my ($rc, $err) = worker('--embedding-provider', 'ollama',
                            '--embedding-url', $url,
                            '--embedding-timeout', '0.5', 'run', '--drain');
    is $rc, 0, 'drained';
    cmp_ok time - $t0, '<', 4, 'without waiting for the server';
    like sql("SELECT last_error FROM jobs WHERE status = 'failed'"),
        qr/timeout|timed out/i, 'the job records the timeout';
    reset_db();
};

done_testing;
