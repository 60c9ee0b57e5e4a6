# The API description, docs/openapi.yaml: the linter finds nothing in it, and
# t/openapi/check.mjs finds the running module answering as it says, on /api/
# and on the /v1/ gateway (keys, scope, limit_req), with every route of the
# module's table documented and nothing else. The Node.js tools are those of
# t/openapi/package-lock.json (scripts/deps installs them); without them the
# suite fails.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use File::Temp qw(tempdir);
use Chathistory;

no_shuffle();
no_long_string();

my $tools = 't/openapi/node_modules';

$ENV{REDOCLY_TELEMETRY} = 'off';
$ENV{REDOCLY_SUPPRESS_UPDATE_NOTICE} = 'true';
$ENV{NO_UPDATE_NOTIFIER} = '1';

my $node_ok = system('node --version >/dev/null 2>&1') == 0;
ok($node_ok, 'node is installed (scripts/deps)');
ok(-x "$tools/.bin/redocly", "the linter is installed in $tools (npm ci in t/openapi, or scripts/deps)");

my $lint = `cd t/openapi && ./node_modules/.bin/redocly lint --config redocly.yaml --format stylish ../../docs/openapi.yaml 2>&1`;
is($?, 0, 'redocly lint finds nothing in docs/openapi.yaml') or diag($lint);

# The document's version is the package's, and its licence the project's.
my ($package_version) = `head -1 debian/changelog` =~ /^\S+ \(([^)]+)\)/;
my $docs = do { local (@ARGV, $/) = 'docs/openapi.yaml'; <> };
my ($doc_version) = $docs =~ /^info:\n(?:  .*\n)*?  version: (\S+)$/m;
is($doc_version, $package_version,
   'info.version of docs/openapi.yaml is the version of debian/changelog');
my ($doc_licence) = $docs =~ /^  license:\n(?:    .*\n)*?    identifier: (\S+)$/m;
my $copyright = do { local (@ARGV, $/) = 'debian/copyright'; <> };
my ($deb_licence) = $copyright =~ /^Files: \*\n(?:\S.*\n)*?License: (\S+)$/m;
my $licence = do { local (@ARGV, $/) = 'LICENSE'; <> };
is($doc_licence, 'BSD-2-Clause', 'info.license of docs/openapi.yaml is BSD-2-Clause');
is($deb_licence, $doc_licence, 'debian/copyright says the same of all files');
like($licence, qr/\ABSD 2-Clause License\n\nCopyright \(c\) 2026 The ngx_http_chathistory_module authors\n/,
     'LICENSE is the BSD 2-Clause text, with the holder');
like($copyright, qr/^Copyright: 2026 The ngx_http_chathistory_module authors$/m,
     'debian/copyright names the same holder');

our $Storage = tempdir(CLEANUP => 1);
chmod 0755, $Storage;
$ENV{TEST_NGINX_OPENAPI_STORAGE} = $Storage;

# The checker, run against the block's nginx: its TAP lines become this
# file's assertions.
sub check_openapi {
    my $port = $ENV{TEST_NGINX_SERVER_PORT} || Test::Nginx::Util::server_port();
    my @cmd = ('node', 't/openapi/check.mjs',
               '--base', "http://127.0.0.1:$port",
               '--database-url', $ENV{TEST_NGINX_DATABASE_URL},
               '--storage', $Storage);
    my $n = 0;

    open my $out, '-|', @cmd or do { fail("cannot run node: $!"); return };
    my $last;
    while (my $line = <$out>) {
        chomp $line;
        if ($line =~ /^(not )?ok \d+ - (.*)$/) {
            $last = ok(!$1, "openapi: $2");
            $n++;
        } elsif ($line =~ /^# ?(.*)$/) {
            diag($1) if defined $last && !$last;
        }
    }
    close $out;
    is($? >> 8, 0, 'the OpenAPI checker exits with 0');
    cmp_ok($n, '>', 500, 'the OpenAPI checker ran its cases');
}

add_block_preprocessor(sub { chathistory_block(shift) });

run_tests();

__DATA__

=== TEST 1: the module answers as docs/openapi.yaml says, on /api and /v1
--- http_config
    chathistory_database_url "$TEST_NGINX_DATABASE_URL";
    chathistory_auth_cache zone=openapi_keys:1m valid=60s invalid=1s;
    # the "slow" organization of t/openapi/check.mjs gets 1 request a minute
    map $chathistory_org_id $openapi_slow_org {
        0190c0de-0000-7000-8000-000000000003  $chathistory_org_id;
        default                               "";
    }
    limit_req_zone $openapi_slow_org zone=openapi_slow:1m rate=1r/m;
--- config
    chathistory_audio_storage_path $TEST_NGINX_OPENAPI_STORAGE;
    # client_max_body_size: nginx's default, which the runner raises for the server
    location /api/ { client_max_body_size 1m; chathistory_api; }
    location /v1/ {
        client_max_body_size 1m;
        chathistory_auth     api_key;
        limit_req            zone=openapi_slow nodelay;
        limit_req_status     429;
        limit_req_log_level  warn;
        error_page           429 = @chathistory_rate_limited;
        chathistory_api;
    }
    location @chathistory_rate_limited {
        default_type application/json;
        add_header   Retry-After 60 always;
        return 429 '{"error":{"code":"rate_limited","message":"too many requests"}}\n';
    }
--- init
main::check_openapi();
--- request
GET /api/settings/retention
--- error_code: 200
--- response_body_like: "retention_days":
--- no_error_log eval
# nginx itself logs a body over client_max_body_size at [error]
[qr/\[error\](?!.*client intended to send too large body)/, '[crit]', '[alert]',
 '[emerg]']
