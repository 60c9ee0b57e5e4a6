# Self-test of t/runner with plain nginx (no modules).
BEGIN {    # only when asked: t/runner/selftest/run sets this
    if (!$ENV{TEST_NGINX_RUNNER_SELFTEST}) {
        require Test::More;
        Test::More::plan(skip_all => 'runner self-test; run t/runner/selftest/run');
    }
}
use Test::Nginx::Socket 'no_plan';

our $HttpConfig = <<'_EOC_';
    map $http_x_foo $foo_seen { default "yes"; "" "no"; }
_EOC_

no_shuffle();
run_tests();

__DATA__

=== TEST 1: return
--- config
    location /t { return 200 "hi\n"; }
--- request
GET /t
--- response_body
hi
--- no_error_log
[error]



=== TEST 2: response headers, present and absent
--- config
    location /t {
        add_header X-Test "abc" always;
        return 201 "created";
    }
--- request
    GET /t
--- error_code: 201
--- response_headers
X-Test: abc
!X-Missing
--- response_headers_like
Content-Type: text/pl\w+
--- response_body chomp
created



=== TEST 3: more_headers and http_config eval
--- http_config eval: $::HttpConfig
--- config
    location /t { return 200 "foo=$http_x_foo seen=$foo_seen\n"; }
--- more_headers
X-Foo: bar
--- request
GET /t?a=1
--- response_body
foo=bar seen=yes



=== TEST 4: POST body, Content-Length added and body trimmed
--- config
    location /t {
        client_body_in_single_buffer on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location /echo {
        return 200 "len=$content_length\n";
    }
--- request
POST /t
hello world
--- response_body
len=11



=== TEST 5: request eval and response_body_like eval
--- config
    location /t { return 200 "method=$request_method uri=$uri\n"; }
--- request eval
"PUT /t\r\n"
--- response_body_like eval
qr/^method=PUT uri=\/t$/m



=== TEST 6: error_log and no_error_log
--- config
    location /t { return 404; }
--- request
GET /t
--- error_code: 404
--- error_log
http request line: "GET /t HTTP/1.1"
--- no_error_log
[alert]




=== TEST 7: error_log catches [error]
--- config
    location /t { root /nonexistent-dir; }
--- request
GET /t/x.html
--- error_code: 404
--- error_log eval
[qr/\[error\].*No such file or directory/, "open()"]



=== TEST 8: proxied response
--- config
    location /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/big;
        proxy_buffering off;
        chunked_transfer_encoding on;
    }
    location /big { return 200 "chunky\n"; }
--- request
GET /t
--- response_body
chunky



=== TEST 9: HEAD request
--- config
    location /t { return 200 "body\n"; }
--- request
HEAD /t
--- response_body



=== TEST 10: multiple requests with array expectations
--- config
    location /a { return 200 "A"; }
    location /b { return 403; }
--- request eval
["GET /a", "GET /b"]
--- error_code eval
[200, 403]
--- response_body_like eval
["^A\$", "403 Forbidden"]



=== TEST 11: pipelined requests
--- config
    location /a { return 200 "A\n"; }
    location /b { return 200 "B\n"; }
--- pipelined_requests eval
["GET /a", "GET /b"]
--- response_body eval
["A\n", "B\n"]



=== TEST 12: no config reuses previous nginx
--- request
GET /b
--- response_body
B



=== TEST 13: init runs Perl code (in package Test::Nginx::Util) before the request
--- init
open my $fh, '>', html_dir() . "/init.txt" or die $!;
print $fh "written by init\n";
close $fh;
--- config
--- request
GET /init.txt
--- response_body
written by init



=== TEST 14: grep_error_log
--- config
    location /t { return 200 "x"; }
--- request
GET /t
--- grep_error_log eval: qr/http finalize request: -?\d+/
--- grep_error_log_out
http finalize request: 0



=== TEST 15: user_files and default root location
--- user_files
>>> hello.txt
hello file
--- config
--- request
GET /hello.txt
--- response_body
hello file



=== TEST 16: skip_nginx
--- config
    location /t { return 500; }
--- request
GET /t
--- skip_nginx
2: > 0.0.1
--- response_body
nope



=== TEST 17: timeout with abort
--- config
    location /t { proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1; proxy_read_timeout 5s; }
--- http_config
    server { listen $TEST_NGINX_RAND_PORT_1; location / { limit_rate 1; return 200 "slow"; } }
--- request
GET /t
--- timeout: 200ms
--- abort
--- ignore_response



=== TEST 18: raw_request, sent as is
--- config
    location /t { return 200 "raw $server_protocol\n"; }
--- raw_request eval
"GET /t HTTP/1.0\r\nHost: localhost\r\n\r\n"
--- response_body
raw HTTP/1.0



=== TEST 19: request split into packets; wait before the log check
--- config
    location /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/len;
    }
    location /len { return 200 "len=$content_length\n"; }
--- request eval
[["POST /t\nhel", {value => "lo", delay_before => 0.1}]]
--- response_body
len=5
--- wait: 0.1
--- error_log
http request line: "POST /t HTTP/1.1"



=== TEST 20: must_die
--- config
    location /t { no_such_directive on; }
--- request
GET /t
--- must_die
--- error_log
unknown directive "no_such_directive"



=== TEST 21: must_die with an exit code; the next block starts cleanly
--- config
    location /t { return 200 a b c; }
--- must_die: 1
--- error_log
invalid number of arguments in "return" directive



=== TEST 22: after must_die
--- config
    location /t { return 200 "alive\n"; }
--- request
GET /t
--- response_body
alive



=== TEST 23: big chunked response is decoded
--- config
    location /t {
        ssi on;           # drops Content-Length, so the response is chunked
        ssi_types *;
        alias $TEST_NGINX_SERVER_ROOT/html/big.txt;
    }
--- user_files eval
[["big.txt" => ("x" x 100000) . "\n"]]
--- request
GET /t
--- raw_response_headers_like: Transfer-Encoding: chunked
--- response_body eval
("x" x 100000) . "\n"
