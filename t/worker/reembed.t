# reembed: jobs for messages embedded by another model, once.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use ChwTest;
use Test::More;

setup_db();

make_messages(3, model => 'old-model', no_jobs => 1);
make_messages(2, model => 'hash-v1', no_jobs => 1);
make_messages(1, no_jobs => 1);

my ($rc, $err, $out) = worker('reembed');
is $rc, 0, 'reembed: exit 0';
is $out, "4\n", 'prints the number of jobs queued';
like $err, qr/msg="reembedding queued" model=hash-v1 jobs=4/, 'logged';

($rc, $err, $out) = worker('reembed');
is $out, "0\n", 'a second run queues nothing while they wait';

($rc) = worker('run', '--drain');
is $rc, 0, 'drained';
is sql("SELECT count(*) FROM messages WHERE embedding_model = 'hash-v1'"
       . " AND embedding IS NOT NULL"), 4, 'the four re-embedded';
is sql("SELECT count(*) FROM messages WHERE embedding IS NULL"), 2,
    'the up-to-date ones untouched';

($rc, undef, $out) = worker('--embedding-provider', 'ollama', 'reembed');
is $out, "6\n", 'another model: everything';

done_testing;
