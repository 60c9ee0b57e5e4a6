# Self-test: explicit plan, repeat_each, block preprocessor, env expansion.
BEGIN {    # only when asked: t/runner/selftest/run sets this
    if (!$ENV{TEST_NGINX_RUNNER_SELFTEST}) {
        require Test::More;
        Test::More::plan(skip_all => 'runner self-test; run t/runner/selftest/run');
    }
}
use Test::Nginx::Socket;

$ENV{TEST_NGINX_GREETING} = 'howdy';
our $Loc = '    location /t { return 200 "eval config\n"; }';

repeat_each(2);
plan tests => repeat_each() * 2 * blocks();

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('request', "GET /t\n") unless defined $block->request;
});
env_to_nginx('TEST_NGINX_GREETING');
run_tests();

__DATA__

=== TEST 1: $TEST_NGINX_* expanded in config, request from the preprocessor
--- config
    location /t { return 200 "$TEST_NGINX_GREETING on $TEST_NGINX_SERVER_PORT\n"; }
--- response_body eval
"howdy on $ENV{TEST_NGINX_SERVER_PORT}\n"



=== TEST 2: config eval
--- config eval: $::Loc
--- response_body
eval config



=== TEST 3: main_config and http_config
--- main_config
    worker_rlimit_nofile 1024;
--- http_config
    server_tokens off;
--- config
    location /t { return 200 "$request_method\n"; }
--- request
    # a comment before the request line
    DELETE /t
--- response_headers
Server: nginx
