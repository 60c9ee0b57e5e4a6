# Administration: organizations and API keys from the command line.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use ChwTest;
use Digest::SHA qw(sha256_hex);
use Test::More;

setup_db();

subtest 'org create, list, set-retention' => sub {
    my ($rc, $err, $out) = worker('org', 'create', 'acme',
                                  '--retention-days', '30');
    is $rc, 0, 'created';
    like $out, qr/^[0-9a-f-]{36}\tacme\t30\t\S+Z$/, 'prints id, name, days';
    my ($id) = $out =~ /^(\S+)/;

    ($rc, $err) = worker('org', 'create', 'acme');
    is $rc, 1, 'a duplicate name fails';
    like $err, qr/duplicate key|already exists/, 'says why';

    ($rc, $err, $out) = worker('org', 'list');
    like $out, qr/^\Q$id\E\tacme\t30\t/m, 'list shows acme';
    like $out, qr/\tdefault\tforever\t/m, 'and default';

    my $s = make_messages(0);
    sql("UPDATE sessions SET org_id = '$id', created_at = now() - interval"
        . " '10 days' WHERE id = '$s'");
    ($rc, undef, $out) = worker('org', 'set-retention', $id, '7',
                                '--apply-existing');
    is $rc, 0, 'retention set by id';
    like $out, qr/\tacme\t7\t/, 'prints the new value';
    is sql("SELECT expires_at < now() FROM sessions WHERE id = '$s'"), 't',
        '--apply-existing recomputes expires_at';

    ($rc) = worker('org', 'set-retention', 'acme', 'null');
    is sql("SELECT retention_days IS NULL FROM organizations"
           . " WHERE name = 'acme'"), 't', 'null keeps forever';
    ($rc) = worker('org', 'set-retention', 'acme', '0');
    is $rc, 2, 'out of range: usage error';
    ($rc) = worker('org', 'set-retention', 'nope', '5');
    is $rc, 1, 'unknown org: failure';
};

subtest 'apikey create, list, revoke' => sub {
    my ($rc, $err, $out) = worker('apikey', 'create', '--org', 'acme',
                                  '--name', 'ci');
    is $rc, 0, 'created';
    chomp(my $key = $out);
    like $key, qr/^chk_[A-Za-z0-9_-]{43}$/, 'chk_ and 32 random bytes';
    unlike $err, qr/\Q$key\E/, 'the key is not in the log';
    is sql("SELECT encode(key_hash, 'hex') FROM api_keys WHERE name = 'ci'"),
        sha256_hex($key), 'only its SHA-256 is stored';
    is sql("SELECT count(*) FROM api_keys k JOIN organizations o"
           . " ON o.id = k.org_id WHERE o.name = 'acme'"), 1, 'in acme';

    (undef, undef, my $out2) = worker('apikey', 'create', '--org', 'acme',
                                      '--name', 'ci2');
    isnt $out2, $out, 'keys differ';

    ($rc, undef, $out) = worker('apikey', 'list', '--org', 'acme');
    is $rc, 0, 'list';
    is scalar(() = $out =~ /\tacme\t/g), 2, 'two keys';
    unlike $out, qr/chk_/, 'no key printed';
    my ($id) = $out =~ /^(\S+)\tacme\tci\t/m;

    ($rc) = worker('apikey', 'revoke', $id);
    is $rc, 0, 'revoked';
    is sql("SELECT revoked_at IS NOT NULL FROM api_keys WHERE id = '$id'"),
        't', 'revoked_at set';
    (undef, undef, $out) = worker('apikey', 'list');
    like $out, qr/^\Q$id\E\tacme\tci\t\S+\trevoked\tnever$/m,
        'listed as revoked';

    ($rc) = worker('apikey', 'revoke', '01a2cccc-0000-7000-8000-000000000000');
    is $rc, 1, 'unknown key: failure';
    ($rc) = worker('apikey', 'create', '--org', 'nope', '--name', 'x');
    is $rc, 1, 'unknown org: failure';
    ($rc) = worker('apikey', 'create', '--org', 'acme');
    is $rc, 2, 'no name: usage error';
};

subtest 'names: non-empty, at most 200 characters, printable' => sub {
    my $orgs = sql("SELECT count(*) FROM organizations");
    my ($rc, $err) = worker('org', 'create', '');
    is $rc, 2, 'an empty name: usage error';
    like $err, qr/organization name is empty/, 'says so';

    ($rc, $err) = worker('org', 'create', 'x' x 10_000);
    is $rc, 2, 'a 10,000-character name: usage error';
    like $err, qr/organization name is longer than 200 characters/, 'says so';

    ($rc, $err) = worker('org', 'create', "tab\there");
    is $rc, 2, 'a control character: usage error';
    like $err, qr/organization name contains a control character/, 'says so';

    ($rc, $err) = worker('org', 'create', "bad\xff");
    is $rc, 2, 'invalid UTF-8: usage error';
    like $err, qr/organization name is not valid UTF-8/, 'says so';

    is sql("SELECT count(*) FROM organizations"), $orgs, 'none was created';

    my ($out);
    ($rc, $err, $out) = worker('org', 'create', "\x{c3}\x{a9}" x 200);
    is $rc, 0, '200 characters (400 bytes of UTF-8) are fine';

    ($rc, $err) = worker('apikey', 'create', '--org', 'acme', '--name',
                         "line\nbreak");
    is $rc, 2, 'a key name with a control character: usage error';
    like $err, qr/key name contains a control character/, 'says so';
    ($rc, $err) = worker('apikey', 'create', '--org', 'acme', '--name',
                         'k' x 201);
    is $rc, 2, 'a key name of 201 characters: usage error';
};

subtest 'apikey list --org unknown' => sub {
    my ($rc, $err, $out) = worker('apikey', 'list', '--org', 'nope');
    is $rc, 1, 'exits 1';
    like $err, qr/no such organization/, 'says why';
    is $out, '', 'prints nothing';

    ($rc, undef, $out) = worker('apikey', 'list', '--org', 'default');
    is $rc, 0, 'an organization without keys: success';
    is $out, '', 'and no line';
};

done_testing;
