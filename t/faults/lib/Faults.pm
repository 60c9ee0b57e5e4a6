package Faults;

# What the fault suites share: an nginx of their own (master and workers,
# so that reloads and binary upgrades are the real thing) in front of a
# plain nginx playing the pipeline backend, a bounded load of forked
# keep-alive clients that write down every answer, and the counting of
# what was accepted against what the database holds.

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter 'import';
use File::Basename qw(dirname);
use File::Temp ();
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);
use lib dirname(__FILE__) . '/../../lib';
use Chathistory::Helpers qw(psql_rows free_port wait_until slurp read_pid);

our @EXPORT = qw(nginx_start nginx_stop nginx_pid nginx_log nginx_signal
                 load_start load_wait request_once raw_request psql_rows
                 new_sessions backends backend_answers children wait_until slurp_file missing_messages
                 lock_messages $ROOT);

our $ROOT = abs_path(dirname(__FILE__) . '/../../..');

my $binary = $ENV{TEST_NGINX_BINARY} // '/usr/sbin/nginx';
my $module = $ENV{TEST_NGINX_LOAD_MODULES}
             // "$ROOT/build/nginx/objs/ngx_http_chathistory_module.so";
my $parent = $$;
my (@nginxes, @loads, %made);

# The pipeline's answer, as the backend gives it: the transcript ends with
# the request's argument "say".
our $ANSWER = '{"transcript":"good morning $arg_say","translation":"bom dia",'
              . '"stt_ms":120,"translate_ms":30,"tts_ms":400,'
              . '"model_used":"faults"}';

# Starts an nginx in a directory of its own; returns a hash with its port,
# dir and pid file. Options: conf (the whole http block's inside, for the
# backend), http and server (lines added to the module's nginx), db,
# workers, spool (a directory; one is made otherwise).
sub nginx_start {
    my (%o) = @_;
    my $dir = File::Temp::tempdir('faults-nginx-XXXXXX', TMPDIR => 1,
                                  CLEANUP => 1);
    chmod 0755, $dir;
    mkdir "$dir/$_" for qw(logs tmp spool);
    chmod 0777, "$dir/spool", "$dir/tmp";

    my $n = { dir => $dir, port => free_port(), pid_file => "$dir/logs/nginx.pid",
              log => "$dir/logs/error.log", spool => $o{spool} // "$dir/spool" };
    my $workers = $o{workers} // 2;
    $o{log_level} //= 'warn';
    $o{$_} //= '' for qw(http server);
    my $load = $o{backend} ? '' : "load_module $module;";
    # a binary upgrade starts nginx again with only the environment it was
    # told to keep: the sanitizers' runtime and options (scripts/test
    # --sanitize) must be among it
    $load .= join '', map { "\nenv $_;" }
             grep { defined $ENV{$_} } qw(LD_PRELOAD ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS);
    # scripts/test --sanitize preloads the runtime through a wrapper, which the
    # new binary is not started through: name it here
    $load .= "\nenv \"LD_PRELOAD=$ENV{CHATHISTORY_SAN_PRELOAD}\";"
        if $ENV{CHATHISTORY_SAN_PRELOAD} && !defined $ENV{LD_PRELOAD};
    my $http = $o{backend} ? backend_http($n) : module_http($n, \%o);

    open my $fh, '>', "$dir/nginx.conf" or die "$dir/nginx.conf: $!";
    print $fh <<"CONF";
$load
worker_processes $workers;
error_log $n->{log} $o{log_level};
pid $n->{pid_file};
thread_pool default threads=2;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
$http
}
CONF
    close $fh;

    system($binary, '-p', "$dir/", '-c', "$dir/nginx.conf", '-e', $n->{log})
        == 0
        or die "nginx did not start: " . slurp_file($n->{log});
    push @nginxes, $n;

    wait_until(5, sub { request_once($n, "GET /ok") == 200 })
        or die "nginx does not answer on $n->{port}";
    return $n;
}

sub module_http {
    my ($n, $o) = @_;
    my $db = $o->{db} // $ENV{TEST_NGINX_DATABASE_URL}
        // die "TEST_NGINX_DATABASE_URL is not set (t/README.md)\n";
    my $backend = $o->{backend_port} // die "no backend_port\n";
    return <<"HTTP";
    chathistory_database_url "$db";
    chathistory_spool_path $n->{spool};
    $o->{http}
    upstream pipeline {
        server 127.0.0.1:$backend;
        keepalive 16;
    }
    server {
        listen 127.0.0.1:$n->{port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location = /ok { return 200 "ok\\n"; }
        location = /status { stub_status; }
        location /api/ { chathistory_api; }
        location /pipeline {
            chathistory_capture on;
            proxy_pass http://pipeline/answer;
        }
        $o->{server}
    }
HTTP
}

sub backend_http {
    my ($n) = @_;
    return <<"HTTP";
    client_max_body_size 0;
    server {
        listen 127.0.0.1:$n->{port};
        location = /ok { return 200 "ok\\n"; }
        location = /answer {
            access_log $n->{dir}/logs/answers.log;
            default_type application/json;
            return 200 '$ANSWER';
        }
    }
HTTP
}

sub nginx_pid {
    my ($n, $file) = @_;
    return read_pid($file // $n->{pid_file});
}

sub nginx_signal {
    my ($n, $sig, $pid) = @_;
    $pid //= nginx_pid($n) or die "no nginx pid\n";
    kill $sig, $pid or die "kill $sig $pid: $!\n";
    return $pid;
}

# QUIT and wait (at most $seconds); then TERM, then KILL.
sub nginx_stop {
    my ($n, $seconds) = @_;
    my $pid = nginx_pid($n) or return;
    my $gone = sub { !kill 0, $pid };
    kill 'QUIT', $pid;
    return 1 if wait_until($seconds // 10, $gone);
    kill 'TERM', $pid;
    return 0 if wait_until(3, $gone);
    kill 'KILL', $pid;
    return 0;
}

# so that END stops nginx after a kill, a closed pipe or ^C too
$SIG{$_} = sub { exit 1 } for qw(TERM INT HUP PIPE);

END {
    local $?;
    return if $$ != $parent;
    kill 'KILL', $_->{pid} for grep { !$_->{done} } @loads;
    for my $n (@nginxes) {
        my @pids = grep { defined } map { nginx_pid($n, $_) }
                   $n->{pid_file}, "$n->{pid_file}.oldbin";
        kill 'QUIT', @pids if @pids;
        wait_until(5, sub { !grep { kill 0, $_ } @pids });
        kill 'KILL', @pids if grep { kill 0, $_ } @pids;
    }
    # the sessions new_sessions made, their messages and jobs: thousands of
    # embedded messages of the default organization would crowd out a later
    # suite's own in a search (t/search.t, on a second run)
    for my $url (keys %made) {
        my $ids = join ',', map { "'$_'" } @{$made{$url}};
        eval {
            psql_rows($url, "DELETE FROM jobs WHERE payload->>'message_id' IN (SELECT id::text"
                            . " FROM messages WHERE session_id IN ($ids))");
            psql_rows($url, "DELETE FROM sessions WHERE id IN ($ids)");
            1;
        } or warn "cannot delete the suite's sessions: $@";
    }
}

# How many pipeline requests the backend answered.
sub backend_answers {
    my ($n) = @_;
    my $log = slurp_file("$n->{dir}/logs/answers.log");
    return scalar(() = $log =~ /\n/g);
}

# The pids of a process's children (a master's workers; after USR2, the
# new master too).
sub children {
    my ($ppid) = @_;
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        my $line = slurp_file($stat) or next;
        push @kids, $1 if $line =~ /^(\d+) \(.*\) \S (\d+) / && $2 == $ppid;
    }
    return @kids;
}

# What nginx logged so far.
sub nginx_log {
    my ($n) = @_;
    return slurp_file($n->{log});
}

# Starts $o{clients} forked clients for $o{seconds} seconds (or until
# $o{requests} each), each on its own keep-alive connection; $o{pick}->($i)
# gives the i-th request of a client as { tag => ..., req => raw request }.
# A request on a reused connection that the server had closed before
# answering anything (a keep-alive race every HTTP client knows) is sent
# again once on a new connection and counted as a retry, not a failure.
# A request's { expect => 'text' }: a 2xx answer without it in its body
# counts as status "BODY".
# $o{interval}: seconds between the starts of a client's requests, at least.
sub load_start {
    my (%o) = @_;
    my $dir = File::Temp::tempdir('faults-load-XXXXXX', TMPDIR => 1,
                                  CLEANUP => 1);
    my @pids;
    my $deadline = time + $o{seconds};

    for my $c (1 .. $o{clients}) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            client_loop($o{port}, $deadline, $o{requests}, $o{pick}, $c,
                        "$dir/$c", $o{timeout} // 10, $o{interval} // 0);
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }

    my $load = { dir => $dir, pids => \@pids, started => time,
                 clients => $o{clients} };
    push @loads, map { { pid => $_ } } @pids;
    return $load;
}

sub client_loop {
    my ($port, $deadline, $max, $pick, $c, $file, $timeout, $interval) = @_;
    open my $out, '>', $file or die "$file: $!";
    my ($sock, $used, $i, $next) = (undef, 0, 0, 0);

    while (time < $deadline && (!$max || $i < $max)) {
        my $r = $pick->($i++, $c);
        my $started = time;
        $next = $started + $interval;
        my $res;

        for my $try (1, 2) {
            if (!$sock) {
                $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                              PeerPort => $port,
                                              Timeout => $timeout);
                $used = 0;
                if (!$sock) {
                    $res = { error => "connect: $!" };
                    last;
                }
            }
            my $fresh = !$used;
            $res = exchange($sock, $r->{req}, $timeout);
            $used = 1;
            if ($res->{error} || $res->{close}) {
                close $sock;
                undef $sock;
            }
            last unless $res->{error} && $res->{nothing} && !$fresh;
            $res->{retried} = 1;
            print $out join("\t", sprintf('%.3f', time), $r->{tag}, 'RETRY',
                            '-', $res->{error}), "\n";
        }

        $res->{status} = 'BODY' if defined $r->{expect} && $res->{status}
                                   && $res->{status} =~ /^2/
                                   && index($res->{body}, $r->{expect}) < 0;
        print $out join("\t", sprintf('%.3f', $started), $r->{tag},
                        $res->{status} // 'ERR', $res->{msgid} // '-',
                        $res->{error} // '-'), "\n";
        $out->flush;
        my $wait = $next - time;
        sleep $wait if $wait > 0;
    }
    close $out;
}

# One request on a connection: status, message id, whether the server
# closes; or an error, with "nothing" when not a byte came back.
sub exchange {
    my ($sock, $req, $timeout) = @_;
    my $sel = IO::Select->new($sock);

    local $SIG{PIPE} = 'IGNORE';
    my $off = 0;
    while ($off < length $req) {
        my $n = syswrite $sock, $req, length($req) - $off, $off;
        return { error => "write: $!", nothing => 1 } unless defined $n;
        $off += $n;
    }

    my $buf = '';
    my ($head, $len, $chunked, $status);

    while (1) {
        if (!defined $head && $buf =~ /\r\n\r\n/) {
            ($head, $buf) = split /\r\n\r\n/, $buf, 2;
            ($status) = $head =~ m{^HTTP/1\.\d (\d{3})};
            return { error => 'bad status line' } unless $status;
            ($len) = $head =~ /^Content-Length:\s*(\d+)/mi;
            $chunked = $head =~ /^Transfer-Encoding:\s*chunked/mi;
            $len //= 0 unless $chunked;
        }
        if (defined $head) {
            my $complete = $chunked ? $buf =~ /(?:^|\r\n)0\r\n\r\n\z/
                                    : length($buf) >= $len;
            if ($complete) {
                my ($id) = $head =~ /^X-Chathistory-Message-Id:\s*(\S+)/mi;
                return { status => $status, msgid => $id, body => $buf, head => $head,
                         close => scalar($head =~ /^Connection:\s*close/mi) };
            }
        }
        return { error => 'timeout', nothing => $buf eq '' && !$head }
            unless $sel->can_read($timeout);
        my $n = sysread $sock, $buf, 65536, length $buf;
        if (!$n) {
            return { error => defined $n ? 'closed' : "read: $!",
                     nothing => $buf eq '' && !defined $head };
        }
    }
}

# Waits for the clients; returns a summary: total, by tag and status, the
# message ids of 2xx answers by tag, errors, retries, and every answer as
# [time, tag, status] in order.
sub load_wait {
    my ($load) = @_;
    waitpid $_, 0 for @{$load->{pids}};
    $_->{done} = 1 for @loads;

    my %s = (total => 0, failed => 0, retries => 0, by => {}, ids => {},
             errors => {}, answers => []);
    for my $c (1 .. $load->{clients}) {
        open my $fh, '<', "$load->{dir}/$c" or next;
        while (<$fh>) {
            chomp;
            my ($t, $tag, $status, $id, $err) = split /\t/;
            if ($status eq 'RETRY') {
                $s{retries}++;
                next;
            }
            $s{total}++;
            $s{by}{$tag}{$status}++;
            push @{$s{ids}{$tag}}, $id if $status =~ /^2/ && $id ne '-';
            $s{errors}{$err}++ if $status eq 'ERR';
            push @{$s{answers}}, [$t, $tag, $status, $id];
        }
    }
    @{$s{answers}} = sort { $a->[0] <=> $b->[0] } @{$s{answers}};
    $s{seconds} = time - $load->{started};
    return \%s;
}

# One request on a new connection: the status (0 when none came).
sub request_once {
    my ($n, $line, $body, %h) = @_;
    my $res = raw_request($n, http_request($line, $body, %h));
    return wantarray ? ($res->{status} // 0, $res) : $res->{status} // 0;
}

sub raw_request {
    my ($n, $req, $timeout) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $n->{port}, Timeout => 5)
        or return { error => "connect: $!" };
    my $res = exchange($sock, $req, $timeout // 10);
    close $sock;
    return $res;
}

sub http_request {
    my ($line, $body, %h) = @_;
    my $req = "$line HTTP/1.1\r\nHost: localhost\r\n";
    $req .= "$_: $h{$_}\r\n" for sort keys %h;
    $req .= "Content-Length: " . length($body) . "\r\n" if defined $body;
    return $req . "\r\n" . ($body // '');
}

# How many of these message ids the messages table lacks; with $seconds,
# polls until none is missing or the time is up (the spool is replayed
# once a second).
sub missing_messages {
    my ($url, $ids, $seconds) = @_;
    my $missing;
    my $end = time + ($seconds // 0);
    my $script = ids_script($ids);
    while (1) {
        open my $p, '-|', 'psql', $url, '-X', '-q', '-A', '-t',
            '-v', 'ON_ERROR_STOP=1', '-f', $script->filename
            or die "cannot run psql: $!";
        $missing = <$p>;
        close $p or die "psql failed counting messages\n";
        chomp $missing;
        return $missing if $missing == 0 || time >= $end;
        sleep 0.5;
    }
}

sub ids_script {
    my ($ids) = @_;
    my $f = File::Temp->new(SUFFIX => '.sql');
    print $f "CREATE TEMP TABLE accepted (id uuid);\n"
             . "COPY accepted FROM STDIN;\n", map({ "$_\n" } @$ids), "\\.\n"
             . "SELECT count(*) FROM accepted a WHERE NOT EXISTS"
             . " (SELECT 1 FROM messages m WHERE m.id = a.id);\n";
    close $f;
    return $f;
}

# $count sessions of the default organization; returns their ids.
sub new_sessions {
    my ($url, $count, $audio) = @_;
    my @rows = psql_rows($url, "INSERT INTO sessions (id, org_id, source_lang,"
        . " target_lang, audio_enabled) SELECT chathistory_uuidv7(), id, 'en',"
        . " 'pt-BR', " . ($audio ? 'true' : 'false') . " FROM organizations,"
        . " generate_series(1, $count) WHERE name = 'default' RETURNING id");
    push @{$made{$url}}, map { $_->[0] } @rows;
    return map { $_->[0] } @rows;
}

# Locks the messages table against writes for $seconds, from a psql of its
# own; returns that child's pid once the lock is held (undef if it is not
# within 5 s): batches wait meanwhile.
sub lock_messages {
    my ($url, $seconds) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        exec 'psql', $url, '-X', '-q', '-c', "BEGIN; LOCK TABLE messages IN EXCLUSIVE MODE;"
                                            . " SELECT pg_sleep($seconds); COMMIT;";
        die "exec psql: $!";
    }
    return wait_until(5, sub {
        (psql_rows($url, "SELECT count(*) FROM pg_locks l JOIN pg_class c"
                         . " ON c.oid = l.relation WHERE c.relname = 'messages'"
                         . " AND l.mode = 'ExclusiveLock' AND l.granted"))[0][0] > 0
    }) ? $pid : undef;
}

# Connections the database has for an application name.
sub backends {
    my ($url, $name) = @_;
    my ($row) = psql_rows($url, "SELECT count(*) FROM pg_stat_activity"
                                . " WHERE application_name = '$name'");
    return $row->[0];
}

# psql_rows, free_port, wait_until: t/lib/Chathistory/Helpers.pm
sub slurp_file { return slurp(@_) }

1;
