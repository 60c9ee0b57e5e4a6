# Every block here MUST produce failures; t/runner/selftest/run checks that
# exactly the listed assertions fail.  Not meant to be run by itself.
BEGIN {    # only when asked: t/runner/selftest/run sets this
    if (!$ENV{TEST_NGINX_RUNNER_SELFTEST}) {
        require Test::More;
        Test::More::plan(skip_all => 'runner self-test; run t/runner/selftest/run');
    }
}
use Test::Nginx::Socket 'no_plan';

master_on();    # so that a killed worker shows up as "exited on signal"
no_shuffle();
run_tests();

__DATA__

=== TEST 1: wrong body (the failure shows a diff)
--- config
    location /t { return 200 "hello\nworld\n"; }
--- request
GET /t
--- response_body
hello
there



=== TEST 2: wrong status, missing header, header that must be absent
--- config
    location /t { add_header X-Present 1; return 404; }
--- request
GET /t
--- response_headers
X-Wanted: 1
!X-Present
--- response_body_like: ^nope$



=== TEST 3: error_log pattern missing, no_error_log pattern present
--- config
    location /t { return 200 "x"; }
--- request
GET /t
--- no_error_log
http request line
--- error_log
this line is not in the log



=== TEST 4: worker crash is detected; no_error_log [error] catches [alert]
--- config
    location /t { return 200 "x"; }
--- init
select undef, undef, undef, 0.3;    # let the master spawn its worker
my $pid = get_pid_from_pidfile();
system("pkill -SEGV -P $pid");      # only the children of our master
select undef, undef, undef, 0.3;
--- request
GET /t
--- no_error_log
[error]



=== TEST 5: client timeout without --- abort
--- config
    location /t { proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1; }
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / { proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_2; }
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_2;
        location / { limit_rate 1; return 200 "0123456789"; }
    }
--- request
GET /t
--- timeout: 300ms
--- ignore_response
