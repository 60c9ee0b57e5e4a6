package Test::Nginx::Socket;

# Minimal re-implementation of the CPAN module Test::Nginx::Socket
# (openresty/test-nginx) for this project: a Test::Base subclass whose
# blocks describe nginx config + HTTP request + expected response/log.
# Nginx management lives in Test::Nginx::Util.  See t/runner/README.md.

use strict;
use warnings;

# "-base" (lower case) makes us a Test::Base subclass and imports its
# functions without Spiffy's source filter.
use Test::Base -base;
use Test::Nginx::Util;
use IO::Select ();
use IO::Socket::INET ();
use POSIX qw(EAGAIN EWOULDBLOCK);
use Time::HiRes qw(sleep);

our @EXPORT = qw(env_to_nginx is_str plan run_tests run_test repeat_each
    config_preamble worker_connections master_process_enabled no_long_string
    workers master_on master_off log_level no_shuffle no_root_location
    server_name server_addr server_root html_dir server_port
    server_port_for_client timeout check_accum_error_log
    add_block_preprocessor bail_out add_cleanup_handler
    add_response_body_check);

our @ResponseBodyChecks;
sub add_response_body_check { push @ResponseBodyChecks, shift }

$Test::Nginx::Util::RunTestHelper = \&run_test_helper;
$Test::Nginx::Util::CheckErrorLog = \&check_error_log;

# ------------------------------------------------------------ request side

# --- more_headers text -> ("Name: value\r\n"..., is_chunked)
sub parse_more_headers {
    my ($text) = @_;
    my ($out, $chunked) = ('', 0);
    for my $line (split /\n+/, $text // '') {
        next if $line =~ /^\s*#/;
        my ($k, $v) = split /:\s*/, $line, 2;
        $v //= '';
        $chunked = 1 if lc $k eq 'transfer-encoding' && $v eq 'chunked';
        $out .= "$k: $v\r\n";
    }
    return ($out, $chunked);
}

# "METHOD [URI [VERSION]]\nbody" -> full HTTP request, adding Host,
# Connection and (for a non-empty body) Content-Length like the real module.
# The body then loses its leading/trailing whitespace, as in the real one.
sub build_request {
    my ($name, $req, $more, $conn) = @_;
    my ($hdr, $chunked) = parse_more_headers($more);
    my ($first, $body) = split /\n/, $req, 2;
    $body //= '';
    my ($meth, $uri, $ver) = grep { length } split /\s+/, $first // '';
    bail_out("$name - Request line should be non-empty") unless defined $meth;
    $uri //= '/';
    $ver //= 'HTTP/1.1';
    my $len = '';
    if (!$chunked && $body ne '' && $hdr !~ /(?:^|\n)Content-Length:/) {
        $body =~ s/^\s+|\s+$//gs;
        $len = 'Content-Length: ' . length($body) . "\r\n";
    }
    my $std = '';
    $std .= "Host: $ServerName\r\n" if $hdr !~ /(?:^|\n)Host:/i;
    $std .= "Connection: $conn\r\n" if $hdr !~ /(?:^|\n)Connection/i;
    return "$meth $uri $ver\r\n$std$hdr$len\r\n$body";
}

# A request given as packets [[p1, p2, {value => p3, delay_before => 1}]]:
# build the full request from their concatenation, then cut the trailing
# packets back off its end so that each is sent by its own syswrite.
sub build_packets {
    my ($name, $pkts, $more) = @_;
    my @p = map { ref $_ ? {%$_} : { value => $_ } } @$pkts;
    my $full = build_request($name, join('', map { $_->{value} } @p), $more, 'close');
    my $tail = join '', map { $_->{value} } @p[1 .. $#p];
    return [{ value => $full }]
        if @p == 1 || substr($full, -length $tail) ne $tail;
    $p[0]{value} = substr $full, 0, length($full) - length($tail);
    return \@p;
}

sub indexed_more_headers {
    my ($block, $i) = @_;
    my $more = $block->more_headers // '';
    return $more unless ref $more eq 'ARRAY';
    my $h = $more->[$i];
    bail_out($block->name . " - --- more_headers lacks data for request $i")
        unless defined $h;
    return $h;
}

# All connections of a block: a list of packet lists ([{value, delay_before}]).
sub get_req_from_block {
    my ($block) = @_;
    my $name = $block->name;
    if (defined(my $raw = $block->raw_request)) {
        return [[map { { value => $_ } } ref $raw ? @$raw : ($raw)]];
    }
    if (my $reqs = $block->pipelined_requests) {
        bail_out("$name - invalid entries in --- pipelined_requests")
            unless ref $reqs eq 'ARRAY';
        my $all = '';
        for my $i (0 .. $#$reqs) {
            $all .= build_request($name, $reqs->[$i], indexed_more_headers($block, $i),
                                  $i == $#$reqs ? 'close' : 'keep-alive');
        }
        return [[{ value => $all }]];
    }
    my $request = $block->request;
    bail_out("$name - no --- request section") unless defined $request;
    if (!ref $request) {
        1 while $request =~ s/^\s*#[^\n]+\s+|^\s+//gs;   # leading comments
        $request = [$request];
    }
    my @list;
    for my $i (0 .. $#$request) {
        my $one = $request->[$i];
        my $more = indexed_more_headers($block, $i);
        push @list, ref $one ? build_packets($name, $one, $more)
                             : [{ value => build_request($name, $one, $more, 'close') }];
    }
    return \@list;
}

# ------------------------------------------------------------- HTTP client

sub connect_to_server {
    my ($name, $timeout) = @_;
    for my $try (1 .. 50) {
        my $sock = IO::Socket::INET->new(PeerAddr => $ServerAddr,
            PeerPort => $ServerPortForClient, Proto => 'tcp', Timeout => $timeout);
        return $sock if $sock;
        my $wait = 0.05 * $try;
        sleep($wait > 1 ? 1 : $wait);
    }
    fail("$name - Can't connect to $ServerAddr:$ServerPortForClient (aborted)\n");
    return undef;
}

# Send the packets and read until the server closes the connection.
# $timeout bounds the wait between two I/O events, as in the real module.
sub send_request {
    my ($packets, $timeout, $block) = @_;
    my $name = $block->name;
    my $sock = connect_to_server($name, $timeout) or return '';
    $sock->blocking(0);
    my $sel = IO::Select->new($sock);
    my @queue = @$packets;
    my ($resp, $buf, $off) = ('', shift(@queue)->{value}, 0);
    my $delay = $block->raw_request_middle_delay;
    while (1) {
        my ($r, $w) = IO::Select->select($sel, defined $buf ? $sel : undef,
                                         undef, $timeout);
        if (!$r && !$w) {
            fail("ERROR: client socket timed out - $name\n")
                unless defined $block->abort;
            last;
        }
        if ($w && @$w) {
            my $n = syswrite $sock, $buf, length($buf) - $off, $off;
            if (!defined $n) {
                next if $! == EAGAIN || $! == EWOULDBLOCK;
                warn "$name - write failed: $!\n";
                undef $buf;
                next;
            }
            $off += $n;
            if ($off >= length $buf) {
                my $next = shift @queue;
                ($buf, $off) = ($next ? $next->{value} : undef, 0);
                my $wait = $next ? $next->{delay_before} // $delay : 0;
                sleep $wait if $wait;
                shutdown $sock, ($block->shutdown =~ /^\d+$/ ? $block->shutdown : 1)
                    if !$next && defined $block->shutdown;
            }
        }
        if ($r && @$r) {
            my $n = sysread $sock, my $chunk, 8192;
            if (!defined $n) {
                next if $! == EAGAIN || $! == EWOULDBLOCK;
                warn "WARNING: $name - HTTP response read failure: $!\n";
                last;
            }
            last if $n == 0;
            $resp .= $chunk;
        }
    }
    close $sock;
    return $resp;
}

# --------------------------------------------------------- response parsing

# Parse one response off the front of $raw.  Returns (res, raw_headers,
# leftover) where res = {code, headers => {lc name => [values]}, body}.
sub parse_response {
    my ($name, $raw, $head_req) = @_;
    my ($head, $body) = $raw =~ /^(.*?\r\n)\r\n(.*)\z/s ? ($1, $2) : ($raw, '');
    my %res = (headers => {}, body => $body);
    my @lines = split /\r\n/, $head;
    my $status = shift(@lines) // '';
    $res{code} = $1 if $status =~ m{^HTTP/\d+\.\d+\s+(\d+)};
    for (@lines) {
        push @{ $res{headers}{lc $1} }, $2 if /^([^:\s]+)\s*:\s*(.*?)\s*$/;
    }
    my $code = $res{code} // 0;
    return (\%res, $head, undef) if $code == 304 || $code == 101 || $head_req;
    my $te  = header(\%res, 'Transfer-Encoding') // '';
    my $len = header(\%res, 'Content-Length');
    my $left;
    if ($te eq 'chunked') {
        ($res{body}, $left) = decode_chunked($name, $body);
        return undef unless defined $res{body};
    } elsif (defined $len && $len =~ /^\d+$/) {
        if (length $body > $len) {
            $left = substr $body, $len;
            $res{body} = substr $body, 0, $len;
        } elsif (length $body < $len) {
            warn "WARNING: $name - response body truncated: $len expected, "
                 . "but got " . length($body) . "\n";
        }
    }
    return (\%res, $head, $left);
}

sub decode_chunked {
    my ($name, $raw) = @_;
    my $decoded = '';
    while (1) {
        if ($raw =~ /\G0[ \t]*\r\n\r\n/gc) {
            return ($decoded, $raw =~ /\G(.+)/gcs ? $1 : undef);
        }
        if ($raw =~ /\G[ \t]*([A-Fa-f0-9]+)[ \t]*\r\n/gc) {
            my ($size, $at) = (hex $1, pos $raw);
            if (substr($raw, $at + $size, 2) eq "\r\n") {
                $decoded .= substr $raw, $at, $size;
                pos($raw) = $at + $size + 2;
                next;
            }
            fail("$name - invalid chunked data received");
            return;
        }
        fail("$name - invalid chunked body or no last chunk found");
        return;
    }
}

# Header value by case-insensitive name; repeated headers are joined by ", ".
sub header {
    my ($res, $key) = @_;
    my $v = $res && $res->{headers}{lc $key};
    return $v ? join(', ', @$v) : undef;
}

# --------------------------------------------------------------- the checks

# Multi-request blocks take array values: pick element $idx.
sub get_indexed_value {
    my ($name, $value, $idx, $need_array) = @_;
    if (ref $value eq 'ARRAY') { return $value->[$idx] }
    bail_out("$name - You asked for many requests, the expected results "
             . "should be arrays as well.") if $need_array;
    return $value;
}

sub check_error_code {
    my ($block, $res, $idx, $need_array) = @_;
    my $name = $block->name;
    my $got = ($res && $res->{code}) || '';
    if (defined(my $like = $block->error_code_like)) {
        my $pat = get_indexed_value($name, $like, $idx, $need_array);
        return like($got, qr/$pat/sm, "$name - status code ok");
    }
    my $exp = $block->error_code;
    $exp = defined $exp ? get_indexed_value($name, $exp, $idx, $need_array) : 200;
    is($got, $exp, "$name - status code ok");
}

sub check_response_headers {
    my ($block, $res, $raw_headers, $idx, $need_array) = @_;
    my $name = $block->name;
    for my $kind (qw(like unlike)) {
        my $sec = "raw_response_headers_$kind";
        next unless defined $block->$sec;
        my $pat = get_indexed_value($name, $block->$sec, $idx, $need_array);
        no strict 'refs';
        &{"Test::More::$kind"}($raw_headers, qr/$pat/s, "$name - raw resp headers $kind");
    }
    if (defined $block->response_headers) {
        my $h = parse_headers(get_indexed_value($name, $block->response_headers,
                                                $idx, $need_array));
        for my $key (sort keys %$h) {
            my $val = $h->{$key};
            if (!defined $val) {
                unlike($raw_headers, qr/^\s*\Q$key\E\s*:/ms,
                       "$name - header $key not present in the raw headers");
                next;
            }
            $val =~ s/\$ServerPort\b/$ServerPort/g;
            $val =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            is(header($res, $key) // '', $val, "$name - header $key ok");
        }
    } elsif (defined $block->response_headers_like) {
        my $h = parse_headers(get_indexed_value($name, $block->response_headers_like,
                                                $idx, $need_array));
        for my $key (sort keys %$h) {
            like(header($res, $key) // '', qr/^$h->{$key}$/,
                 "$name - header $key like ok");
        }
    }
}

sub check_response_body {
    my ($block, $res, $idx, $rep, $need_array) = @_;
    my $name = $block->name;
    my $body = $res ? $res->{body} : undef;
    if (defined $block->response_body) {
        my $exp = get_indexed_value($name, $block->response_body, $idx, $need_array);
        if (defined $exp && !ref $exp) {
            $exp =~ s/\$ServerPort\b/$ServerPort/g;
            $exp =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
        }
        my $what = ref $exp ? 'like' : 'response is expected';
        is_str($body, $exp, "$name - response_body - $what "
                            . "(repeated req $rep, req $idx)");
    } elsif (defined $block->response_body_like || defined $block->response_body_unlike) {
        my $type = defined $block->response_body_like ? 'like' : 'unlike';
        my $sec  = "response_body_$type";
        my $pat  = get_indexed_value($name, $block->$sec, $idx, $need_array);
        $pat =~ s/\$ServerPort\b/$ServerPort/g;
        $pat =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
        my $summary = trim($body) // '';
        no strict 'refs';
        &{"Test::More::$type"}($body, qr/$pat/s,
            "$name - response_body_$type - response is expected ($summary)");
    }
    $_->($block, $body, $idx, $rep, 0) for @ResponseBodyChecks;
}

# Section value -> list of patterns (plain strings match as substrings).
sub patterns_of {
    my ($pats) = @_;
    return ref $pats eq 'ARRAY' ? [@$pats] : ref $pats ? [$pats]
         : [split /\n+/, $pats =~ s/\n\z//r];
}

sub line_matches {
    my ($line, $pat, $strict) = @_;
    return $line =~ /$pat/ if ref $pat;
    # Stricter than the real module: "[error]" also catches worse levels.
    return $line =~ /\[(?:error|crit|alert|emerg)\]/ if $strict && $pat eq '[error]';
    return index($line, $pat) >= 0;
}

sub fmt_str {
    my $s = shift;
    chomp $s;
    $s =~ s/"/\\"/g; $s =~ s/\r/\\r/g; $s =~ s/\n/\\n/g;
    return $s;
}

# --- error_log / --- access_log: every pattern must match some line.
sub check_log_present {
    my ($name, $pats, $lines, $log, $rep) = @_;
    PAT: for my $pat (@{ patterns_of($pats) }) {
        for my $line (@$lines) {
            next unless line_matches($line, $pat);
            pass("$name - pattern \"$pat\" matches a line in $log (req $rep)");
            next PAT;
        }
        fail("$name - pattern \"$pat\" should match a line in $log (req $rep)");
    }
}

# --- no_error_log / --- no_access_log: one failure per matching line,
# one pass per pattern that matches nothing.
sub check_log_absent {
    my ($name, $pats, $lines, $log, $rep) = @_;
    for my $pat (@{ patterns_of($pats) }) {
        my $found = 0;
        for my $i (0 .. $#$lines) {
            next unless line_matches($lines->[$i], $pat, 1);
            $found++;
            my @more = @$lines[$i + 1 .. ($i + 9 < $#$lines ? $i + 9 : $#$lines)];
            fail("$name - pattern \"" . fmt_str($pat) . "\" should not match any "
                 . "line in $log but matches line \"" . fmt_str($lines->[$i])
                 . "\" (req $rep)\n" . join('', @more));
        }
        pass("$name - pattern \"" . fmt_str($pat) . "\" does not match a line "
             . "in $log (req $rep)") unless $found;
    }
}

sub check_grep_error_log {
    my ($block, $lines, $rep) = @_;
    my $name = $block->name;
    my $pat = $block->grep_error_log;
    my $exp = $block->grep_error_log_out;
    return unless defined $pat || defined $exp;
    bail_out("$name - --- grep_error_log and --- grep_error_log_out go together")
        unless defined $pat && defined $exp;
    $pat = $pat->[$rep] if ref $pat eq 'ARRAY';
    $exp = $exp->[$rep] if ref $exp eq 'ARRAY';
    my $out = '';
    for my $line (@$lines) {
        my $m = ref $pat ? ($line =~ /$pat/ ? $& : undef)
                         : (index($line, $pat) >= 0 ? $pat : undef);
        $out .= "$m\n" if defined $m && $m !~ /\n/;
    }
    is_str($out, $exp, "$name - grep_error_log_out (req $rep)");
}

# Error-log checks for the log lines written since the previous check.
# Also fails on assertion failures and crashed workers (the latter is
# stricter than the real module), and warns about [alert]/[crit]/[emerg].
sub check_error_log {
    my ($block, $rep) = @_;
    my $name = $block->name;
    my $lines = error_log_data();
    check_grep_error_log($block, $lines, $rep);
    check_log_present($name, $block->error_log, $lines, 'error.log', $rep)
        if defined $block->error_log;
    check_log_absent($name, $block->no_error_log, $lines, 'error.log', $rep)
        if defined $block->no_error_log;
    my $wanted = join ' ', map { ref $_ eq 'ARRAY' ? @$_ : $_ // '' }
                 $block->error_log, $block->no_error_log;
    for my $line (@$lines) {
        if ($line =~ /\bAssertion .*?failed\b|exited on signal \d+/) {
            fail("$name - " . fmt_str($line));
        } elsif ($line =~ /\[(alert|crit|emerg)\]/ && index($wanted, "[$1") < 0) {
            warn "WARNING: $name - " . fmt_str($line) . "\n";
        }
    }
}

sub check_access_log {
    my ($block, $rep) = @_;
    my $name = $block->name;
    return unless defined $block->access_log || defined $block->no_access_log;
    my $lines = access_log_data();
    check_log_present($name, $block->access_log, $lines, 'access.log', $rep)
        if defined $block->access_log;
    check_log_absent($name, $block->no_access_log, $lines, 'access.log', $rep)
        if defined $block->no_access_log;
}

sub check_response {
    my ($block, $res, $raw_headers, $idx, $rep, $need_array) = @_;
    check_error_code($block, $res, $idx, $need_array);
    check_response_headers($block, $res, $raw_headers, $idx, $need_array);
    check_response_body($block, $res, $idx, $rep, $need_array);
}

sub after_response {
    my ($block, $rep) = @_;
    sleep $block->wait if $block->wait;
    check_error_log($block, $rep);
    check_access_log($block, $rep) unless defined $block->ignore_response;
}

# One repetition of a block: send every request, check every response,
# and check the logs after each response (like the real module).
sub run_test_helper {
    my ($block, $dry_run, $rep) = @_;
    my $name = $block->name;
    my $reqs = get_req_from_block($block);
    my $timeout = parse_time(scalar $block->timeout) // timeout();
    my $pipelined = $block->pipelined_requests;
    my $need_array = $pipelined ? 1 : @$reqs > 1;
    my $idx = 0;
    for my $packets (@$reqs) {
        my $head = join('', map { $_->{value} } @$packets) =~ /^\s*HEAD\s+/;
        my $raw = send_request($packets, $timeout, $block);
        my $n = $pipelined ? @$pipelined : 1;
        for my $k (1 .. $n) {
            if (!defined $block->ignore_response) {
                my ($res, $raw_headers, $left) = parse_response($name, $raw // '', $head);
                warn "WARNING: $name - unexpected extra bytes after the response: "
                     . fmt_str($left) . "\n" if defined $left && $k == $n;
                $raw = $left;
                check_response($block, $res, $raw_headers // '', $idx, $rep, $need_array);
            }
            after_response($block, $rep) if $k < $n || $idx < @$reqs - 1;
            $idx++;
        }
    }
    after_response($block, $rep);
}

1;
